"""Assemble backbone + head, freeze, compile, train, and measure what it cost.

The Keras transfer-learning rules this module keeps:
- the backbone is always called with `training=False` (see `Classifier.call`),
  so every BatchNormalization in it, frozen or not, normalizes with its moving
  statistics and never updates them; a trainable BN layer in the suffix learns
  only its scale and offset (the Keras fine-tuning guide's policy);
- `trainable` flags are set before `compile` (the train step captures them);
- parameter counts come from the model's own weights.

With an `ActivationCache`, a phase whose backbone prefix is frozen trains only
the suffix and the head, on the prefix's cached outputs (see activations.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline.models.freezing import param_count
from pipeline.models.strategies import Phase, StrategyPlan
from pipeline.train import devices, loop
from pipeline.train.loop import DivergedError  # noqa: F401  (part of this module's interface)


@dataclass
class TrainResult:
    val_accuracy: list[float]  # per epoch
    trainable_params: int
    frozen_params: int
    total_params: int
    device: str
    device_kind: str  # "GPU" or "CPU"
    device_seconds: float
    max_trainable_params: int  # over phases: gradual and lp_ft change the count
    stopped: str | None = None  # None, "plateau" (early stopping) or "pruned"
    cached_phases: int = 0  # phases trained on cached prefix activations
    phase_epochs: list[int] = field(default_factory=list)  # epochs run in each phase
    test_accuracy: float | None = None  # train_plan's `test`, evaluated once at the end
    test_balanced_accuracy: float | None = None  # the mean of per-class recalls on `test`
    test_correct: str | None = None  # one "1"/"0" per test image
    val_correct: str = ""  # one "1"/"0" per validation example at the best epoch
    val_loss: float = math.nan  # validation cross-entropy at the best epoch: breaks ties

    @property
    def best_val_accuracy(self) -> float:
        return max(self.val_accuracy)


def build_classifier(backbone, head_units: int, num_classes: int, dropout: float = 0.0, seed=0):
    """Images -> backbone (inference mode) -> head. Freezing is applied per phase."""
    from pipeline.models.classifier import Classifier, Head

    head = Head(head_units, num_classes, dropout > 0, backbone.output_shape[1:])
    model = Classifier(backbone, head, backbone.input_shape[1:])
    head.reset(seed, dropout)
    return model


def on_features(model, features, input_dims: tuple[int, ...]):
    """The same head on another feature extractor (a backbone suffix, or None)."""
    from pipeline.models.classifier import Classifier

    return Classifier(features, model.head, input_dims)


def set_phase(backbone, phase: Phase) -> None:
    """Set `trainable` on every backbone layer (and weight) for a phase. Recompile after."""
    backbone.trainable = True
    keep = set(phase.trainable_layers)
    for layer in backbone.layers:
        # Set every layer explicitly: a model loaded from a file does not pass
        # `backbone.trainable = True` down to layers frozen by an earlier phase.
        layer.trainable = layer.name in keep  # also resets each weight's own flag
        if layer.trainable and phase.bn_and_bias_only:
            for weight in layer.trainable_weights:
                weight.trainable = _is_bn_or_bias(layer, weight)


def _is_bn_or_bias(layer, weight) -> bool:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        return True  # gamma and beta; the moving statistics are never trainable
    return weight.path.endswith("bias")


def compile_classifier(model, learning_rate: float, lr_scales: dict[int, float] | None = None):
    """A train step for the model's current trainable set (set `trainable` first)."""
    return loop.Step(model, model.input_dims, learning_rate, lr_scales)


def fit(
    step: loop.Step,
    train: tuple,
    val: tuple | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], bool] | None = None,
    initial_epoch: int = 0,
    patience: int = 0,
) -> TrainResult:
    """Train a compiled model; time it on the device, synchronised at the end."""
    device = devices.current()
    run = loop.run_epochs(
        step,
        train,
        val,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        first_epoch=initial_epoch,
        patience=patience,
        on_epoch=on_epoch,
    )
    trainable = param_count(step.model.trainable_variables)
    total = param_count(step.model.weights)
    return TrainResult(
        val_accuracy=run.val_accuracy,
        trainable_params=trainable,
        frozen_params=total - trainable,
        total_params=total,
        device=device.name,
        device_kind=device.kind,
        device_seconds=run.seconds,
        max_trainable_params=trainable,
        stopped=run.stopped,
        phase_epochs=[run.epochs],
        val_correct=run.best_val_correct,
        val_loss=run.best_val_loss,
    )


def _cached(cache, cut: int, images, name: str):
    """A split's (or each augmented view's) activations at `cut`."""
    if isinstance(images, loop.Views):
        return loop.Views(tuple(cache.activations(cut, n) for n in images.names), images.names)
    return cache.activations(cut, name)


def train_plan(
    model,
    backbone,
    plan: StrategyPlan,
    train,
    val,
    *,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], bool] | None = None,
    on_phase_end: Callable[[int, loop.Step], None] | None = None,
    cache=None,
    pool=None,
    patience_for: Callable[[int], int] | None = None,
    test=None,
    split_names: tuple[str, str, str] = ("train", "val", "test"),
    class_weights: np.ndarray | None = None,
) -> TrainResult:
    """Run a strategy's phases: set flags, compile, train; counts per phase.

    `model` is `build_classifier(backbone, ...)` (or `pool.model(0, head)`). With
    `cache` (an activations.ActivationCache over this backbone), the plan trains the
    suffix after the deepest cached cut that no phase trains, on that cut's activations.
    With `pool` (a pool.Pool over the same backbone and cache), phases reuse models and
    traced steps of earlier trials. Each phase gets a fresh Adam: LP-FT restarts at a
    new rate by design, and gradual unfreezing changes the variable set. Early stopping
    (`patience_for(phase epochs)`) ends a phase; a pruner's stop ends the plan.
    `val` may be None (no per-epoch evaluation); `test`, if given, is evaluated once at the
    end. `split_names` name train, val and test in `cache`. `train`'s images may be
    `loop.Views` (augmentation): a cached plan trains on the fixed views' activations, an
    uncached one on fresh draws. `class_weights` weigh each class's loss; None: equally.
    """
    cut, plan_model, (plan_train, plan_val, plan_test) = _plan_inputs(
        model, plan, (train, val, test), split_names, cache, pool
    )
    results: list[TrainResult] = []
    epoch = 0
    for index, phase in enumerate(plan.phases):
        step = _phase_step(backbone, plan_model, phase, pool)
        step.weigh_classes(class_weights)  # a pooled step may come from a weighted trial
        result = fit(
            step,
            plan_train,
            plan_val,
            epochs=phase.epochs,
            batch_size=batch_size,
            seed=seed + index,
            on_epoch=on_epoch,
            initial_epoch=epoch,
            patience=patience_for(phase.epochs) if patience_for else 0,
        )
        result.cached_phases = int(bool(cut))
        results.append(result)
        epoch += result.phase_epochs[0]
        if on_phase_end is not None:
            on_phase_end(index, step)
        if result.stopped == "pruned":
            break
    scores = None if test is None else loop.test_scores(step, *plan_test)
    return _combined(results, param_count(model.weights), scores)


def _plan_inputs(model, plan: StrategyPlan, splits, split_names, cache, pool):
    """The cut the plan trains from, the model from there, and the splits as it reads them.

    One cut for the whole plan, below every layer any phase trains: then all
    phases share one model and, with a pool, one traced step (phases differ
    only in which variables get a non-zero rate). A deeper cut per phase would
    save compute in gradual unfreezing's early phases but trace once per phase,
    which on a CPU with small data costs more than the compute it saves.
    """
    trained = {name for phase in plan.phases for name in phase.trainable_layers}
    cut = cache.cut_for(trained) if cache is not None else 0
    if not cut:
        return cut, model, list(splits)
    if pool is not None:
        plan_model = pool.model(cut, model.head)
    else:
        plan_model = on_features(model, cache.suffix(cut), cache.shape(cut))
    cached = [
        None if split is None else (_cached(cache, cut, split[0], name), split[1])
        for split, name in zip(splits, split_names)
    ]
    return cut, plan_model, cached


def _phase_step(backbone, plan_model, phase: Phase, pool) -> loop.Step:
    """The phase's flags set on the backbone, then its step (pooled, or compiled anew)."""
    set_phase(backbone, phase)
    scales = {
        id(w): s for name, s in phase.lr_scales for w in backbone.get_layer(name).trainable_weights
    }
    if pool is not None:
        return pool.step(plan_model, phase, scales)
    return compile_classifier(plan_model, phase.learning_rate, scales)


def _combined(results: list[TrainResult], total: int, scores) -> TrainResult:
    """The plan's result from its phases' (and the test's scores, if any)."""
    last = results[-1]
    best = max(results, key=lambda r: max(r.val_accuracy, default=-1.0))  # the first best phase
    return TrainResult(
        val_accuracy=[a for r in results for a in r.val_accuracy],
        trainable_params=last.trainable_params,
        frozen_params=total - last.trainable_params,
        total_params=total,
        device=last.device,
        device_kind=last.device_kind,
        device_seconds=sum(r.device_seconds for r in results),
        max_trainable_params=max(r.trainable_params for r in results),
        stopped=last.stopped,
        cached_phases=sum(r.cached_phases for r in results),
        phase_epochs=[r.phase_epochs[0] for r in results],
        test_accuracy=None if scores is None else scores.accuracy,
        test_balanced_accuracy=None if scores is None else scores.balanced_accuracy,
        test_correct=None if scores is None else scores.correct,
        val_correct=best.val_correct,
        val_loss=best.val_loss,
    )
