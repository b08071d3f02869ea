"""A linear probe fit to convergence: a candidate beside the search's configurations.

The standard linear evaluation of a pretrained backbone (Kornblith et al. 2019): a
standardised multinomial logistic regression on the frozen backbone's pooled features,
fit by L-BFGS to convergence, its L2 strength C chosen on validation from C_GRID. It
has the head-only configuration's cost (a linear head on cached features) but almost no
search noise: no learning rate, no epoch count read off a noisy validation curve. On
the real-photo benchmark it beat every trained head (0.863 against 0.847 on 1,800 test
photos), so the recommendation weighs it like any other configuration.

Deterministic (L-BFGS from zeros), so every seed gives the same run: one fit, repeated
in the rows so that it sits in the table like the other configurations.
"""

from __future__ import annotations

import time

import numpy as np

from pipeline.evaluate.ranking import PROBE, TRANSFER
from pipeline.models import flops
from pipeline.models.freezing import param_count
from pipeline.screen import scores
from pipeline.train import activations, devices, loop
from pipeline.train.context import RunContext

C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strength; ties go to the stronger penalty


def _scores(probe, x: np.ndarray, y: np.ndarray) -> tuple[float, str, float]:
    """Accuracy, per-example hits as "1"/"0", mean cross-entropy."""
    probs = probe.predict_proba(x)
    hits = np.argmax(probs, axis=1) == y
    return float(np.mean(hits)), loop.bits(hits), loop.cross_entropy(probs, y)


def pooled(ctx: RunContext, split: str) -> np.ndarray:
    """The whole frozen backbone's output for a split, averaged over space."""
    return activations.pooled(ctx.cache.activations(len(ctx.backbone.layers), split))


def select_and_test(ctx: RunContext, seeds: list[int]) -> list[dict]:
    """Choose C (and the class weighting, when the search has two) on validation, refit on
    train+val, test once; one row per seed."""
    _, row = fitted(ctx)
    return [{**row, "seed": seed} for seed in seeds]


def fitted(ctx: RunContext) -> tuple[object, dict]:
    """The probe chosen on validation and refit on train+val (scores.fit_probe's pipeline),
    and its row: what `select_and_test` tests and the export stage exports."""
    ctx.restore()
    x = {s: pooled(ctx, s) for s in ("train", "val", "trainval", "test")}
    y = {s: ctx.splits[s][1] for s in x}
    tried = []
    # ties go to the stronger penalty, then to the search's first class weighting
    for rank, weighting in enumerate(ctx.search.class_weight):
        for c in C_GRID:
            fit = scores.fit_probe(x["train"], y["train"], c, weighting)
            accuracy, hits, loss = _scores(fit, x["val"], y["val"])
            tried.append((accuracy, -loss, -c, -rank, weighting, hits, loss))
    val_accuracy, _, negative_c, _, weighting, val_correct, val_loss = max(tried)
    start = time.perf_counter()
    probe = scores.fit_probe(x["trainval"], y["trainval"], -negative_c, weighting)
    seconds = time.perf_counter() - start
    row = {
        **_described(-negative_c, weighting),
        "image_size": ctx.size,
        "val_accuracy": val_accuracy,
        "val_correct": val_correct,
        "val_loss": val_loss,
        **_tested(probe, x["test"], y["test"]),
        **_costs(ctx, probe, x["train"].shape[1], len(y["trainval"])),
        "device_seconds": seconds,  # scikit-learn, on the CPU
        "device": devices.current().name if devices.current().kind == "CPU" else "CPU",
        "device_kind": "CPU",
    }
    return probe, row


def _described(strength: float, weighting: str) -> dict:
    """The row's configuration columns: a linear head on the whole frozen backbone."""
    return {
        "kind": TRANSFER,
        "rank": 0,
        "trial": -1,
        "top_k": False,
        "strategy_best": False,
        "strategy": PROBE,
        "plan": f"whole backbone frozen; logistic regression on pooled features, C {strength:g} "
        f"(chosen on val from {', '.join(f'{c:g}' for c in C_GRID)}), L-BFGS to convergence"
        + ("" if weighting == "none" else f", classes weighed {weighting}"),
        "class_weight": weighting,
        "augmentation": "none",
        "head_units": 0,
        "learning_rate": float("nan"),
        "frozen_fraction": 1.0,
    }


def _tested(probe, x: np.ndarray, y: np.ndarray) -> dict:
    found = probe.predict(x)
    hits = found == y
    return {
        "test_accuracy": float(np.mean(hits)),
        "test_balanced_accuracy": loop.balanced_accuracy(found, y),
        "test_correct": loop.bits(hits),
    }


def _costs(ctx: RunContext, probe, width: int, n: int) -> dict:
    """Parameters, and FLOPs: the features once (a forward pass through the backbone), then
    L-BFGS's iterations over the linear layer, each about one training step per example."""
    iterations = int(np.max(probe[-1].n_iter_))
    head = flops.head_costs((width,), 0, ctx.num_classes)
    train_flops = n * sum(c.forward for c in ctx.layer_costs) + iterations * n * (
        flops.training_flops(head, [c.name for c in head])
    )
    linear = width * ctx.num_classes + ctx.num_classes
    return {
        "epochs": iterations,
        "trainable_params": linear,
        "total_params": param_count(ctx.backbone.weights) + linear,
        "train_flops": train_flops,
    }
