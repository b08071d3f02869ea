"""Assemble backbone + head, freeze, compile, train, and measure what it cost.

The Keras transfer-learning rules this module keeps:
- the backbone is always called with `training=False` (see `_inference_mode`),
  so every BatchNormalization in it, frozen or not, normalizes with its moving
  statistics and never updates them; a trainable BN layer in the suffix learns
  only its scale and offset (the Keras fine-tuning guide's policy);
- `trainable` flags are set before `compile` (the train step captures them);
- parameter counts come from the model's own weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline import devices
from pipeline.freezing import param_count
from pipeline.strategies import Phase, StrategyPlan


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

    @property
    def best_val_accuracy(self) -> float:
        return max(self.val_accuracy)


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def build_classifier(backbone, head_units: int, num_classes: int, dropout: float = 0.0):
    """Input -> backbone (inference mode) -> pooled features -> [Dense relu, dropout] -> softmax.

    Freezing is applied per phase by `set_phase`, before each compile.
    """
    import keras
    from keras import layers

    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = _inference_mode(backbone)(inputs)
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"backbone output has shape {x.shape}; expected a feature map or vector")
    if head_units > 0:
        x = layers.Dense(head_units, activation="relu", name="head_hidden")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="head_logits")(x)
    return keras.Model(inputs, outputs, name="classifier")


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


def _inference_mode(backbone):
    """A layer that always calls `backbone` with training=False.

    In Keras 3 a functional model overrides the `training=False` stored on a
    nested model's node with its own call's value (fit passes training=True), so
    `backbone(x, training=False)` alone does not keep a trainable BatchNorm in
    inference mode. This wrapper has no `training` argument for Keras to inject.
    """
    import keras

    class InferenceMode(keras.layers.Layer):
        def __init__(self, inner, **kwargs):
            super().__init__(name=inner.name, **kwargs)
            self.inner = inner

        def call(self, x):
            return self.inner(x, training=False)

        def compute_output_shape(self, input_shape):
            return self.inner.compute_output_shape(input_shape)

    return InferenceMode(backbone)


def compile_classifier(model, learning_rate: float, lr_scales: dict[int, float] | None = None):
    """Compile with Adam; remember which weights the train step will update."""

    model.compile(
        optimizer=_scaled_adam(learning_rate, lr_scales or {}),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model._thaw_compiled_for = _trainable_ids(model)


def _trainable_ids(model) -> tuple[int, ...]:
    return tuple(id(w) for w in model.trainable_weights)


def check_compiled_for_current_flags(model) -> None:
    """Changing `trainable` after compile leaves a stale train step: refuse to train."""
    if getattr(model, "_thaw_compiled_for", None) != _trainable_ids(model):
        raise RuntimeError(
            "trainable flags changed since the model was compiled; call compile again "
            "(training.compile_classifier) after every change"
        )


def _scaled_adam(learning_rate: float, scales: dict[int, float]):
    """Adam with a per-variable rate multiplier (discriminative learning rates).

    Keras 3 has no per-variable rate, so the multiplier is applied in update_step,
    looked up by the variable's index in the list the optimizer was built with.
    """
    import keras

    class ScaledAdam(keras.optimizers.Adam):
        def build(self, variables):
            super().build(variables)
            self._rate_scales = [scales.get(id(v), 1.0) for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            scale = self._rate_scales[self._get_variable_index(variable)]
            if scale != 1.0:
                learning_rate = learning_rate * scale
            super().update_step(gradient, variable, learning_rate)

    return ScaledAdam(learning_rate) if scales else keras.optimizers.Adam(learning_rate)


def _epoch_reporter(on_epoch: Callable[[int, float], None] | None):
    """A callback that forwards each epoch's val accuracy and stops on a NaN loss."""
    import keras

    class EpochReporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            loss = logs.get("loss", 0.0)
            if not math.isfinite(loss):
                raise DivergedError(f"loss became {loss} in epoch {epoch + 1}")
            if on_epoch is not None:
                on_epoch(epoch, float(logs["val_accuracy"]))

    return EpochReporter()


def fit(
    model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    initial_epoch: int = 0,
) -> TrainResult:
    """Train a compiled model; time it on the device, synchronised at the end."""
    import keras

    check_compiled_for_current_flags(model)
    keras.utils.set_random_seed(seed)
    device = devices.current()
    start = time.perf_counter()
    history = model.fit(
        train[0],
        train[1],
        validation_data=val,
        initial_epoch=initial_epoch,
        epochs=initial_epoch + epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_epoch_reporter(on_epoch)],
    )
    devices.synchronize(model)
    seconds = time.perf_counter() - start
    trainable = param_count(model.trainable_weights)
    total = param_count(model.weights)
    return TrainResult(
        val_accuracy=[float(a) for a in history.history["val_accuracy"]],
        trainable_params=trainable,
        frozen_params=total - trainable,
        total_params=total,
        device=device.name,
        device_kind=device.kind,
        device_seconds=seconds,
        max_trainable_params=trainable,
    )


def train_plan(
    model,
    backbone,
    plan: StrategyPlan,
    train,
    val,
    *,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
    on_phase_end: Callable[[int], None] | None = None,
) -> TrainResult:
    """Run a strategy's phases: set flags, recompile, train; counts per phase.

    Each phase gets a fresh Adam. Keras 3 optimizers refuse variables they were
    not built with, so carrying Adam's moments across an unfreeze would mean
    copying private slot variables; and LP-FT deliberately restarts at a new rate.
    """
    results: list[TrainResult] = []
    for index, phase in enumerate(plan.phases):
        set_phase(backbone, phase)
        scales = {
            id(w): s
            for name, s in phase.lr_scales
            for w in backbone.get_layer(name).trainable_weights
        }
        compile_classifier(model, phase.learning_rate, scales)
        results.append(
            fit(
                model,
                train,
                val,
                epochs=phase.epochs,
                batch_size=batch_size,
                seed=seed + index,
                on_epoch=on_epoch,
                initial_epoch=sum(p.epochs for p in plan.phases[:index]),
            )
        )
        if on_phase_end is not None:
            on_phase_end(index)
    last = results[-1]
    return TrainResult(
        val_accuracy=[a for r in results for a in r.val_accuracy],
        trainable_params=last.trainable_params,
        frozen_params=last.frozen_params,
        total_params=last.total_params,
        device=last.device,
        device_kind=last.device_kind,
        device_seconds=sum(r.device_seconds for r in results),
        max_trainable_params=max(r.trainable_params for r in results),
    )
