"""The selection rule: which configuration the report recommends, chosen on validation.

One function picks, `recommendation`, from the headline table (tables.headline): the
report calls it, and so should any later stage that needs the same answer (an export of
the recommendation). Test accuracy only reports; it never chooses. The rule's two parts,
`candidates` (cheapest first) and `tied_with_best`, are public because pick_stability
(statistics.py) applies the very same rule to resampled validation images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import ThawError

SELECTIONS = ("one_se", "best")  # report.selection


@dataclass(frozen=True)
class Choice:
    """The recommendation and why: the best on validation, those tied with it, the rule."""

    pick: pd.Series
    best: pd.Series
    tied: pd.DataFrame  # candidates within `margin` of the best's validation accuracy
    candidates: int
    margin: float  # one binomial standard error of the best's validation accuracy (one_se)
    n_val: int
    rule: str


def recommendation(table: pd.DataFrame, n_val: int, rule: str = "one_se") -> Choice:
    """Chosen on validation among all candidates, baselines included (test only reports).

    `best`: the highest validation accuracy, the cheaper on a tie. `one_se` (Breiman et
    al.'s one-standard-error rule): every candidate within one binomial standard error
    of the best's validation accuracy, sqrt(p (1 - p) / n_val), is tied with it, and the
    cheapest of those wins: fewest trainable parameters, then fewest training FLOPs per
    epoch, then the better on validation (`cheapest_first`).
    """
    pool = candidates(table)
    if pool.empty:
        raise ThawError("no configuration has a test run: every final stage failed")
    best = pool.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
    tied = pool[tied_with_best(pool.val_accuracy.to_numpy()[:, None], n_val, rule)[:, 0]]
    margin = float(tie_margin(np.float64(best.val_accuracy), n_val, rule))
    return Choice(tied.iloc[0], best, tied, len(pool), margin, n_val, rule)


def candidates(table: pd.DataFrame) -> pd.DataFrame:
    """What the recommendation chooses among, cheapest first (`cheapest_first`): every
    retrained configuration of every backbone and every baseline that has a validation
    accuracy and a test run."""
    return cheapest_first(table[(table.seeds > 0) & table.val_accuracy.notna()])


def cheapest_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Fewest trainable parameters, then fewest training FLOPs per epoch (both the same on
    every machine, unlike seconds): what the configuration costs. Of equal cost, the better
    on validation (accuracy, then loss) first: a run's epoch count comes from where a noisy
    validation curve peaked, so total FLOPs and seconds only break what ties remain."""
    per_epoch = frame.train_flops / frame.epochs.where(frame.epochs > 0)
    loss = frame.val_loss if "val_loss" in frame else np.nan
    order = frame.assign(_per_epoch=per_epoch, _neg_val=-frame.val_accuracy, _loss=loss)
    keys = ["trainable_params", "_per_epoch", "_neg_val", "_loss", "train_flops",
            "device_seconds", "backbone", "rank"]  # fmt: skip
    ordered = order.sort_values(keys, ignore_index=True, na_position="last")
    return ordered.drop(columns=["_per_epoch", "_neg_val", "_loss"])


def tied_with_best(accuracy: np.ndarray, n_val: int, rule: str) -> np.ndarray:
    """Which candidates (rows, cheapest first) the rule ties with the best, per column of
    validation accuracies (the images as they are, or a resample of them): within one
    binomial standard error of the column's best for `one_se`, equal to it for `best`.
    The recommendation is the first tied row; `pick_stability` applies the same rule."""
    best = accuracy.max(axis=0)
    return accuracy >= best - tie_margin(best, n_val, rule) - 1e-12


def tie_margin(best: np.ndarray, n_val: int, rule: str):
    """How far below the best validation accuracy a candidate still ties: one binomial
    standard error for `one_se`, nothing for `best`."""
    return np.sqrt(best * (1 - best) / n_val) if rule == "one_se" and n_val else 0.0
