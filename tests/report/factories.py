"""Retraining runs as the final stages write them, small enough to check by hand: the
report's tests build their tables from these."""

from __future__ import annotations

import numpy as np
import pandas as pd


def run(backbone, kind, rank, accuracies, params, seconds, trial=None, strategy="freeze_depth",
        top_k=True, strategy_best=True, val=0.5):  # fmt: skip
    transfer = kind == "transfer"
    return [
        {
            "backbone": backbone,
            "kind": kind,
            "rank": rank,
            "trial": trial,
            "strategy": strategy if transfer else None,
            "frozen_fraction": 0.25 if transfer else None,
            "top_k": top_k if transfer else None,
            "strategy_best": strategy_best if transfer else None,
            "seed": seed,
            "plan": f"{kind} {rank}",
            "head_units": 0,
            "learning_rate": 1e-3,
            "epochs": 5,
            "val_accuracy": val,
            "test_accuracy": accuracy,
            "trainable_params": params,
            "total_params": 1000,
            "device_seconds": seconds,
            "device": "cpu",
            "device_kind": "CPU",
            "train_flops": 10,
        }
        for seed, accuracy in enumerate(accuracies)
    ]


def strategies_runs(second_mean_gap: float) -> pd.DataFrame:
    """Three strategies' best configurations on backbone a; lp_ft's is not in the top k."""
    return pd.DataFrame(
        run("a", "transfer", 1, [0.90, 0.91, 0.92], 100, 1.0, trial=4, val=0.8)
        + run("a", "transfer", 2, [0.90 - second_mean_gap + d for d in (-0.01, 0, 0.01)], 50,
              1.0, trial=6, strategy="head_only", val=0.7)
        + run("a", "transfer", 5, [0.5, 0.5, 0.5], 50, 1.0, trial=9, strategy="lp_ft",
              top_k=False, val=0.6)
        + run("a", "transfer", 3, [0.99, 0.99, 0.99], 50, 1.0, trial=7, strategy_best=False,
              val=0.75)
        + run("b", "transfer", 1, [0.95, 0.95, 0.96], 10, 1.0, trial=1, val=0.8)
    )  # fmt: skip


def tied_runs(linear_val: float) -> pd.DataFrame:
    """The issue's case: a full fine-tune 0.975 on 80 validation images, head-only 0.963."""
    return pd.DataFrame(
        run("m", "transfer", 1, [0.86, 0.87], 2_264_930, 10.9, trial=3, strategy="gradual",
            val=0.975)
        + run("m", "transfer", 2, [0.86, 0.87], 164_226, 0.08, trial=5, strategy="head_only",
              val=0.9625)
        + run("m", "transfer", 3, [0.80, 0.81], 1_000_000, 5.0, trial=8, val=0.90)
        + run("", "linear_pixels", None, [0.5, 0.52], 150_000, 0.05, val=linear_val)
    )  # fmt: skip


def with_val_bits(runs: pd.DataFrame, hits: dict[int | None, int], n: int = 80) -> pd.DataFrame:
    """Give each trial (None: the baseline) `hits` correct of n validation images, nested as
    real models' are: a weaker one gets right a subset of what a stronger one does."""
    order = np.random.default_rng(0).permutation(n)
    bits = {}
    for key, k in hits.items():
        row = np.zeros(n, bool)
        row[order[:k]] = True
        bits[key] = "".join("1" if b else "0" for b in row)
    keys = [None if pd.isna(t) else int(t) for t in runs.trial]
    return runs.assign(
        val_correct=[bits[k] for k in keys], val_accuracy=[hits[k] / n for k in keys]
    )
