"""Score every candidate of one backbone before anything trains.

A candidate is (backbone, input size, cut): the frozen prefix up to a candidate freeze
depth, its output pooled over space. Its scores need no training: LogME evidence on the
training split, k-NN and the converged linear probe's accuracy on validation
(scores.py). The features come from the activation cache, which writes them under
results/cache/<backbone>/, so the sweep that follows reads them instead of computing them.
"""

from __future__ import annotations

import gc
import time

from pipeline.config import Params
from pipeline.screen import scores
from pipeline.train import activations
from pipeline.train.context import Contexts, RunContext

COLUMNS = [
    "backbone", "image_size", "cut", "layer", "frozen_fraction", "feature_dim",
    "logme", "knn", "probe", "seconds",
]  # fmt: skip


def score_backbone(name: str, params: Params, manifest: dict) -> list[dict]:
    """One row per (input size, cut) of backbone `name`; a row's seconds include the forward
    pass over its split when it was the first cut of its size to ask (one pass fills
    every cut)."""
    try:
        return _score_sizes(name, params, manifest)
    finally:
        _release()  # the contexts are out of scope here


def _score_sizes(name: str, params: Params, manifest: dict) -> list[dict]:
    contexts = Contexts(name, params, manifest)
    rows = []
    for size in contexts.sizes:
        ctx = contexts[size]
        rows += [_score(name, ctx, c, f, params) for c, f in distinct_cuts(ctx).items()]
    return rows


def distinct_cuts(ctx: RunContext) -> dict[int, float]:
    """The candidate freeze depths as cut -> frozen share, and the whole backbone (1.0,
    the head-only cut), one cut per share: two cuts that freeze the same weights (a block's
    last convolution and the parameter-free activation after it) score nearly the same
    features, and trials cannot tell them apart; the deeper one stands for both."""
    depths = [(d.n_frozen_layers, d.frozen_fraction) for d in ctx.info.depths]
    by_share = {round(f, 9): n for n, f in depths + [(len(ctx.backbone.layers), 1.0)] if n > 0}
    return {n: f for f, n in sorted(by_share.items())}


def _score(name: str, ctx: RunContext, cut: int, share: float, params: Params) -> dict:
    start = time.perf_counter()
    x = {s: activations.pooled(ctx.cache.activations(cut, s)) for s in ("train", "val")}
    y = {s: ctx.splits[s][1] for s in ("train", "val")}
    row = {
        "backbone": name,
        "image_size": ctx.size,
        "cut": cut,
        "layer": ctx.backbone.layers[cut - 1].name,
        "frozen_fraction": share,
        "feature_dim": int(x["train"].shape[1]),
        "logme": scores.logme(x["train"], y["train"], ctx.num_classes),
        "knn": scores.knn_accuracy(
            x["train"], y["train"], x["val"], y["val"], params.sweep.screen.neighbours
        ),
        "probe": scores.probe_accuracy(x["train"], y["train"], x["val"], y["val"]),
    }
    return {**row, "seconds": time.perf_counter() - start}


def _release() -> None:
    """The backbone's memory, before the next one loads: load_context froze the heap
    for the sweep's sake (gc.freeze), and Keras keeps every model's graph in its session."""
    import keras

    gc.unfreeze()
    keras.backend.clear_session()
    gc.collect()
