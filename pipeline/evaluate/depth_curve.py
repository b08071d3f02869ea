"""The freeze-depth curve: accuracy against how deep the frozen prefix goes, two ways.

Yosinski et al. (2014) plot transferability layer by layer, with the copied
layers kept frozen or fine-tuned. Here, at each candidate depth (a cut point):

- frozen: the backbone up to the cut is used as it is, a feature extractor,
  and only a head trains on its (pooled) output there: how good the features
  at that depth are without any fine-tuning;
- fine-tuned: the prefix up to the cut stays frozen and everything after it
  is fine-tuned with the head (the `freeze_depth` strategy).

The two meet where the whole backbone is frozen. When the search ran `surgical`
(Lee et al. 2023), a third mode trains one segment alone, the one starting at the
cut, with everything else frozen: which block matters on these data. Each mode uses the head size,
dropout and learning rate of one search trial (`settings_trial`: the best
`freeze_depth` trial for fine-tuned runs, with its discriminative rates if it
used them; the best head-only trial for frozen ones), trains
on the train split with the search's epochs and early stopping, and reports the
best validation accuracy, averaged over seeds: the measure the search used, so
the curve reads against the trials.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from pipeline import progress
from pipeline.data import augment
from pipeline.models import configuration
from pipeline.models.freezing import FreezePlan
from pipeline.screen import scores
from pipeline.train import activations, loop, phases, runner
from pipeline.train.context import RunContext

FROZEN, FINE_TUNED, SURGICAL = "frozen", "fine-tuned", "one segment fine-tuned"


def settings_trial(trials: pd.DataFrame, mode: str) -> pd.Series:
    """The completed trial whose head, rate and dropout a mode's runs reuse.

    Fine-tuned runs are the `freeze_depth` strategy, so they take its best trial:
    another strategy's learning rate means something else (lp_ft's is the probe's;
    its fine-tuning runs at a fraction of it), and reusing it can sink the curve.
    Frozen runs take the best head-only trial, one-segment runs the best `surgical`
    trial. Each falls back to the best trial that fine-tunes (or not), then to the
    best of all.
    """
    done = trials[trials.state == "COMPLETE"].sort_values(
        ["val_accuracy", "trial"], ascending=[False, True]
    )
    fine_tunes = done.fine_tunes.astype(str) == "True"
    if mode == SURGICAL:
        preferred = [done[done.strategy == "surgical"], done[fine_tunes]]
    elif mode == FINE_TUNED:
        preferred = [done[done.strategy == "freeze_depth"], done[fine_tunes]]
    else:
        preferred = [done[~fine_tunes]]
    return next((rows for rows in preferred if len(rows)), done).iloc[0]


RATE_KEYS = ("discriminative", "lr_decay", "backbone_lr_fraction")


def _settings(ctx: RunContext, trials: pd.DataFrame, mode: str):
    """A mode's configuration, its discriminative-rate choice (fine-tuned runs use
    it) and the trial they came from."""
    row = settings_trial(trials, mode)
    params = json.loads(row["params"])
    rates = {k: params[k] for k in RATE_KEYS if k in params}
    if "backbone_lr_fraction" not in rates:  # a trial that fine-tuned nothing: the range's middle
        r = ctx.search.backbone_lr_fraction
        rates["backbone_lr_fraction"] = float(np.sqrt(r.low * r.high))
    # the curve trains on the train split as it is: its runs compare depths, not augmentation
    config = configuration.from_params(params, ctx.size, ctx.search)
    return dataclasses.replace(config, augmentation=augment.NONE), rates, int(row["trial"])


def frozen_probe(ctx: RunContext, cut: int, config, seed: int, heads: dict) -> loop.PhaseRun:
    """A head on the frozen backbone's activations at `cut`; the layers after it unused."""
    from pipeline.models.classifier import Classifier, Head

    ctx.restore()  # an earlier run fine-tuned layers before `cut`; the cache computes from them
    shape = ctx.cache.shape(cut)
    if cut not in heads:
        head = Head(config.head_units, ctx.num_classes, config.dropout > 0, shape)
        heads[cut] = loop.Step(Classifier(None, head, shape), shape, config.learning_rate)
    step = heads[cut]
    step.model.head.reset(seed, config.dropout)
    step.reset(config.learning_rate)
    step.weigh_classes(ctx.class_weights(config.class_weight, "train"))
    train, val = ((ctx.cache.activations(cut, s), ctx.splits[s][1]) for s in ("train", "val"))
    search = ctx.search
    return loop.run_epochs(
        step,
        train,
        val,
        epochs=search.head_epochs,
        batch_size=search.batch_size,
        seed=seed,
        patience=search.patience_for(search.head_epochs),
    )


def converged_probe(ctx: RunContext, cut: int) -> tuple[float, int]:
    """Validation accuracy of a linear probe fit to convergence on the pooled activations
    at `cut`, and how many features pooling leaves.

    The search's head gets the search's few epochs; at a shallow cut, global average
    pooling leaves a handful of channel means that barely differ between classes, and
    such a head can end at chance. This probe shows what the features allow at best:
    standardised, multinomial logistic regression (L-BFGS, deterministic).
    """
    ctx.restore()
    train, val = (activations.pooled(ctx.cache.activations(cut, s)) for s in ("train", "val"))
    probe = scores.fit_probe(train, ctx.splits["train"][1])
    return float(probe.score(val, ctx.splits["val"][1])), train.shape[1]


def fine_tuned(
    ctx: RunContext, depth: FreezePlan, config, rates: dict, seed: int
) -> phases.TrainResult:
    """The `freeze_depth` strategy at this depth, with the trial's backbone rates."""
    chosen = {"freeze_depth": depth.depth, "discriminative": False}
    return _strategy_run(ctx, "freeze_depth", {**chosen, **rates}, config, seed)


def one_segment(ctx: RunContext, start: int, config, rates: dict, seed: int):
    """The `surgical` strategy with a window of one segment, the `start`-th."""
    chosen = {"surgical_start": start, "surgical_width": 1, "discriminative": False}
    return _strategy_run(ctx, "surgical", {**chosen, **rates}, config, seed)


def _strategy_run(ctx: RunContext, strategy: str, fixed: dict, config, seed: int):
    """`strategy` with the `fixed` choices, trained as a search trial trains it."""
    choice = configuration.StrategyChoice(strategy, **fixed)
    config = dataclasses.replace(config, strategy=choice)
    return runner.run(ctx, config, seed, runner.SEARCH).result


def _run(ctx: RunContext, mode: str, depth, config, rates: dict, seed: int, heads: dict):
    """One run of `mode` at `depth`: (best validation accuracy, device seconds)."""
    n = depth.n_frozen_layers
    if mode == FROZEN:
        run = frozen_probe(ctx, n, config, seed, heads)
        return max(run.val_accuracy), run.seconds
    if mode == SURGICAL:
        start = [first for first, _ in ctx.info.segments].index(n)
        result = one_segment(ctx, start, config, rates, seed)
    else:
        result = fine_tuned(ctx, depth, config, rates, seed)
    return result.best_val_accuracy, result.device_seconds


def trace(ctx: RunContext, trials: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """One row per depth x mode x seed."""
    settings = {
        FROZEN: _settings(ctx, trials, FROZEN),
        FINE_TUNED: _settings(ctx, trials, FINE_TUNED),
    }
    done = trials[trials.state == "COMPLETE"]
    if (done.strategy == "surgical").any():
        settings[SURGICAL] = _settings(ctx, trials, SURGICAL)
    starts = {first for first, _ in ctx.info.segments}
    n_layers, rows, heads = len(ctx.backbone.layers), [], {}
    for depth in progress.bar(ctx.info.depths, "final: freeze-depth curve", unit="depth"):
        n = depth.n_frozen_layers
        probe = converged_probe(ctx, n) if 0 < n and ctx.cache.fits(n) else (np.nan, 0)
        for mode, (config, rates, source) in settings.items():
            if (
                (mode == FROZEN and (n == 0 or not ctx.cache.fits(n)))
                or (mode == FINE_TUNED and n >= n_layers)
                or (mode == SURGICAL and n not in starts)
            ):
                continue  # no features before the first layer; nothing to fine-tune after the last
            for seed in seeds:
                accuracy, seconds, failure = float("nan"), float("nan"), ""
                try:
                    accuracy, seconds = _run(ctx, mode, depth, config, rates, seed, heads)
                except loop.DivergedError as exc:  # recorded; the curve goes on
                    failure = str(exc)
                rows.append(
                    {
                        "depth": depth.depth,
                        "last_frozen_layer": depth.last_frozen_layer or "(nothing)",
                        "frozen_fraction": depth.frozen_fraction,
                        "mode": mode,
                        "seed": seed,
                        "settings_trial": source,
                        "head_units": config.head_units,
                        "learning_rate": config.learning_rate,
                        "lr_decay": rates.get("lr_decay") if mode == FINE_TUNED else None,
                        "backbone_lr_fraction": (
                            None if mode == FROZEN else rates["backbone_lr_fraction"]
                        ),
                        "val_accuracy": accuracy,
                        "converged_probe_accuracy": probe[0] if mode == FROZEN else np.nan,
                        "pooled_features": probe[1] if mode == FROZEN else 0,
                        "device_seconds": seconds,
                        "fail_reason": failure,
                    }
                )
    return pd.DataFrame(rows)
