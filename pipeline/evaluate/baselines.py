"""Baselines that show whether transfer paid: a backbone from scratch, a linear model on pixels.

Both follow the retraining protocol the transferred configurations get, with
the same epoch budget: the learning rate is chosen on the validation split
(RATE_POINTS rates spanning the search's range, each trained for
`search.epochs` epochs, or `search.head_only_epochs` for the linear model, which costs
what a head does, with the same early stopping), then the model is
retrained from a fresh initialisation with each seed on train+val for the
epochs that the chosen run needed to reach its best validation accuracy, and
evaluated once on the test split. That is a lighter search than the
transferred models' Optuna study, which favours transfer; the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import progress
from pipeline.config import Params, SearchParams
from pipeline.data import image_store
from pipeline.data.datasets import TRAINVAL, load_target_splits
from pipeline.data.image_store import MB
from pipeline.evaluate.ranking import LINEAR_PIXELS, SCRATCH, rate_grid
from pipeline.models import flops
from pipeline.models.freezing import param_count
from pipeline.train import devices, loop


@dataclass
class Baseline:
    """A model with its traced step, and how to draw a fresh initialisation from a seed."""

    kind: str  # SCRATCH or LINEAR_PIXELS
    step: loop.Step
    reinit: Callable[[int], None]
    layer_costs: list[flops.LayerCost]  # every layer trains: backbone (if any) and head
    calibrate: Callable[[object], None] | None = None  # BatchNorm statistics from the inputs


def retrain_seeds(seed: int, n: int) -> list[int]:
    """Seeds for every retraining run and baseline: distinct from the sweep's per-trial seeds."""
    return [seed + 10_000 + i for i in range(n)]


def scratch(
    backbone, head_units: int, dropout: float, num_classes: int, bn_momentum: float
) -> Baseline:
    """The backbone's architecture from a random initialisation, nothing frozen.

    BatchNorm is treated as in source pretraining (train/pretrain.py): batch statistics
    while training, momentum `bn_momentum`, and the moving statistics set to the
    training inputs' population statistics before the test ("precise BN"), since
    a short run leaves them unconverged and inference at chance level.
    """
    import keras

    from pipeline.models.classifier import Classifier, Head
    from pipeline.train.batchnorm import batchnorm_layers

    network = keras.models.clone_model(backbone)  # same layers, fresh random weights
    for layer in batchnorm_layers(network):
        layer.momentum = bn_momentum
    head = Head(head_units, num_classes, dropout > 0, backbone.output_shape[1:])
    dims = backbone.input_shape[1:]
    model = Classifier(network, head, dims, features_train_mode=True)
    for layer in network.layers:  # a clone copies flags a strategy's phase left on the original
        layer.trainable = True
    inits: dict[int, list] = {}  # seed -> initial weights: the rate search reuses one seed's

    def reinit(seed: int) -> None:
        if seed not in inits:
            keras.utils.set_random_seed(seed)
            inits[seed] = keras.models.clone_model(backbone).get_weights()
        network.set_weights(inits[seed])
        head.reset(seed, dropout)

    costs = flops.model_costs(network) + flops.head_costs(
        backbone.output_shape[1:], head_units, num_classes
    )
    step = loop.Step(model, dims, 0.0)
    return Baseline(SCRATCH, step, reinit, costs, precise_batchnorm(network, dims))


def precise_batchnorm(network, input_dims: tuple[int, ...]) -> Callable[[object], None]:
    """`calibrate(images)`: backbone.recalibrate_batchnorm with its passes traced once and
    kept, since the scratch baseline calibrates before every validation epoch."""
    from pipeline.train.batchnorm import recalibrate_batchnorm

    passes: dict[int, object] = {}
    return lambda images: recalibrate_batchnorm(network, images, passes=passes)


def linear_pixels(input_dims: tuple[int, ...], num_classes: int) -> Baseline:
    """Softmax regression on the flattened pixels."""
    import keras

    from pipeline.models.classifier import Classifier, Head

    width = int(np.prod(input_dims))
    head = Head(0, num_classes, False, (width,))
    model = Classifier(keras.layers.Flatten(), head, input_dims)
    costs = flops.head_costs((width,), 0, num_classes)
    return Baseline(LINEAR_PIXELS, loop.Step(model, input_dims, 0.0), head.reset, costs)


@dataclass(frozen=True)
class Protocol:
    rates: Sequence[float]
    epochs: int
    batch_size: int
    patience: int
    seeds: Sequence[int]

    @classmethod
    def of(cls, search: SearchParams, seeds: Sequence[int], head_like: bool = False) -> Protocol:
        """The search's epoch cap, batch size and patience, with the rate grid over its range.

        `head_like`: a model as cheap as a head on cached features (a linear model on
        pixels) gets the cap head-only trials get, so it is not cut short beside them.
        """
        epochs = search.head_epochs if head_like else search.epochs
        patience = search.patience_for(epochs)
        return cls(rate_grid(search), epochs, search.batch_size, patience, seeds)


@dataclass(frozen=True)
class Chosen:
    """The rate a baseline's search chose on validation, and what that run showed."""

    val_accuracy: float
    rate: float
    epochs: int  # to its first best validation accuracy
    train_only: float  # its test accuracy, trained on train alone
    val_correct: str
    val_loss: float


def select_and_test(baseline: Baseline, splits: dict, protocol: Protocol) -> list[dict]:
    """Choose the rate on validation, retrain per seed on train+val, test once. One row per seed.

    `splits` holds "train", "val", "trainval" and "test" as (inputs, labels).
    """
    chosen = choose_rate(baseline, splits, protocol)
    return [retrain_and_test(baseline, splits, chosen, seed, protocol) for seed in protocol.seeds]


def choose_rate(baseline: Baseline, splits: dict, protocol: Protocol) -> Chosen:
    """Each rate of the grid from the first seed's initialisation; the best on validation,
    the smaller rate on a tie."""
    step, tuning_seed, calibrate = baseline.step, protocol.seeds[0], baseline.calibrate
    # validation reads the statistics the test will: precise BN from the training inputs
    before_eval = None if calibrate is None else (lambda: calibrate(splits["train"][0]))
    tried = []
    for rate in progress.bar(protocol.rates, f"{baseline.kind}: learning rates", unit="rate"):
        baseline.reinit(tuning_seed)
        step.reset(rate)
        try:
            run = loop.run_epochs(
                step, splits["train"], splits["val"], epochs=protocol.epochs,
                batch_size=protocol.batch_size, seed=tuning_seed, patience=protocol.patience,
                before_eval=before_eval,
            )  # fmt: skip
        except loop.DivergedError:
            continue
        # Not used to choose: kept to show how much of the final test score the 4x larger
        # train+val set buys (the report compares it with the validation score).
        train_only = loop.accuracy(step, *splits["test"])
        # sorts by accuracy, then the smaller rate on a tie
        tried.append(
            (max(run.val_accuracy), -rate, int(np.argmax(run.val_accuracy)) + 1, train_only,
             run.best_val_correct, run.best_val_loss)
        )  # fmt: skip
    if not tried:
        raise loop.DivergedError(f"{baseline.kind}: every learning rate diverged")
    val_accuracy, negative_rate, epochs, train_only, val_correct, val_loss = max(tried)
    return Chosen(val_accuracy, -negative_rate, epochs, train_only, val_correct, val_loss)


def retrain_and_test(
    baseline: Baseline, splits: dict, chosen: Chosen, seed: int, protocol: Protocol
) -> dict:
    """The chosen rate from `seed`'s initialisation on train+val, tested once: one row."""
    step, epochs = baseline.step, chosen.epochs
    baseline.reinit(seed)
    step.reset(chosen.rate)
    try:
        run = loop.run_epochs(
            step, splits["trainval"], None, epochs=epochs, batch_size=protocol.batch_size,
            seed=seed,
        )  # fmt: skip
    except loop.DivergedError as exc:  # recorded; the other seeds go on
        return {"kind": baseline.kind, "seed": seed, "val_accuracy": chosen.val_accuracy,
                "test_accuracy": float("nan"), "fail_reason": str(exc)}  # fmt: skip
    if baseline.calibrate is not None:
        baseline.calibrate(splits["trainval"][0])
    n_trainval = len(splits["trainval"][1])
    scores = loop.test_scores(step, *splits["test"])
    return {
        "kind": baseline.kind,
        "seed": seed,
        "val_accuracy": chosen.val_accuracy,
        "test_accuracy": scores.accuracy,
        "test_balanced_accuracy": scores.balanced_accuracy,
        "test_correct": scores.correct,
        "val_correct": chosen.val_correct,
        "val_loss": chosen.val_loss,
        "test_accuracy_train_only": chosen.train_only,
        "learning_rate": chosen.rate,
        "epochs": epochs,
        "trainable_params": param_count(step.model.trainable_variables),
        "total_params": param_count(step.model.weights),
        "device_seconds": run.seconds,
        "device": devices.current().name,
        "device_kind": devices.current().kind,
        "train_flops": flops.trial_flops(
            baseline.layer_costs, [(epochs, [c.name for c in baseline.layer_costs])], n_trainval, 0
        ),
    }


def pixels_setup(params: Params, manifest: dict) -> tuple[Baseline, dict, Protocol]:
    """The linear model on pixels, its splits (scaled to [0, 1]) and its protocol: what the
    linear_baseline stage runs, and what the export stage retrains when it is the pick."""
    devices.configure(params.seed, params.deterministic)
    loaded = load_target_splits(manifest, ("train", "val", TRAINVAL, "test"))
    # held in memory as float32 within sweep.cache.memory_mb, else read a batch at a time
    inputs, _ = image_store.held_or_streamed(
        {s: x.images for s, x in loaded.items()}, _unit, params.sweep.cache.memory_mb * MB
    )
    splits = {name: (inputs[name], s.labels) for name, s in loaded.items()}
    baseline = linear_pixels(loaded["train"].images.row_shape, len(manifest["target_classes"]))
    seeds = retrain_seeds(params.seed, params.report.seeds)
    return baseline, splits, Protocol.of(params.search, seeds, head_like=True)


def chosen_of(run) -> Chosen:
    """A recorded baseline run's chosen rate and epochs, to retrain it as it ran."""
    return Chosen(float(run.val_accuracy), float(run.learning_rate), int(run.epochs),
                  float("nan"), str(run.val_correct), float(run.val_loss))  # fmt: skip


def run_linear_pixels(params: Params, manifest: dict) -> pd.DataFrame:
    baseline, splits, protocol = pixels_setup(params, manifest)
    runs = pd.DataFrame(select_and_test(baseline, splits, protocol))
    runs.insert(0, "backbone", "")
    runs["plan"] = "softmax regression on raw pixels"
    return runs


def _unit(pixels) -> np.ndarray:
    return np.asarray(pixels, np.float32) / np.float32(255.0)
