"""The selection rule: which configuration the report recommends, chosen on validation.

One function picks, `recommendation`, from the headline table (tables.headline): the
report and the export stage call it, so the file exported is the configuration the
report states. Test accuracy only reports; it never chooses. The rule's parts,
`candidates` (cheapest first) and `ties` (the paired one-standard-error test), are
public because pick_stability (statistics.py) applies the very same rule to resampled
validation images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.errors import ThawError

SELECTIONS = ("one_se", "best")  # report.selection

RULE = (
    "a candidate ties with the best when the best's lead on the same validation images, "
    "b − c (b: images only the best got right; c: images only the candidate got right), "
    "is at most one standard error of that paired difference, √(b + c) images "
    "(McNemar's), and the cheapest tied candidate wins"
)


@dataclass(frozen=True)
class Gap:
    """The best's lead over a candidate on the same validation images, in images."""

    lead: float  # the best's correct images minus the candidate's: b - c
    discordant: float  # b + c; expected under independence where per-image results are missing
    paired: bool  # counted from both per-image results

    @property
    def se(self) -> float:
        """One standard error of the paired difference b - c, in images."""
        return math.sqrt(self.discordant)


@dataclass(frozen=True)
class Choice:
    """The recommendation and why: the best on validation, those tied with it, the rule."""

    pick: pd.Series
    best: pd.Series
    tied: pd.DataFrame  # candidates the rule ties with the best, cheapest first
    candidates: int
    gap: Gap  # the best's lead over the pick
    n_val: int
    rule: str


def recommendation(table: pd.DataFrame, n_val: int, rule: str = "one_se") -> Choice:
    """Chosen on validation among all candidates, baselines included (test only reports).

    `best`: the highest validation accuracy, the cheaper on a tie. `one_se` (Breiman et
    al.'s one-standard-error rule, on paired evidence): every candidate whose validation
    accuracy trails the best's by at most one standard error of the paired difference
    (`ties`) is tied with it, and the cheapest of those wins: fewest trainable
    parameters, then fewest training FLOPs per epoch, then the better on validation
    (`cheapest_first`). A single proportion's binomial error would be zero at 100 %
    validation accuracy, and nothing could tie with a best that is one image ahead.
    """
    pool = candidates(table)
    if pool.empty:
        raise ThawError("no configuration has a test run: every final stage failed")
    best_at = int(np.argmax(pool.val_accuracy.to_numpy()))  # the first: cheapest of the best
    best = pool.iloc[best_at]
    gaps = [gap(row, best, n_val) for _, row in pool.iterrows()]
    tied = pool[[ties(g.lead, g.discordant, rule) for g in gaps]]
    pick_gap = gaps[pool.index.get_loc(tied.index[0])]
    return Choice(tied.iloc[0], best, tied, len(pool), pick_gap, n_val, rule)


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


def ties(lead, discordant, rule: str):
    """The rule itself, on counts of images (arrays or scalars): for `one_se` a lead of at
    most one standard error of the paired difference, √(b + c) (McNemar's: the
    difference's spread when the two are equally good); for `best` no lead at all."""
    slack = np.sqrt(discordant) if rule == "one_se" else 0.0
    return lead <= slack + 1e-9


def val_bits(row, n_val: int) -> np.ndarray | None:
    """The row's per-image validation correctness (None: not recorded for these images)."""
    text = row.get("val_correct")
    if not isinstance(text, str) or len(text) != n_val or not n_val:
        return None
    return np.frombuffer(text.encode(), np.uint8) == ord("1")


def gap(row, best, n_val: int) -> Gap:
    """The best's lead over `row`: counted on the images where both kept per-image results;
    otherwise from the accuracies, with the discordant images two independent
    classifiers of those accuracies would have (a study from before per-image results)."""
    mine, theirs = val_bits(row, n_val), val_bits(best, n_val)
    if mine is not None and theirs is not None:
        b, c = int(np.sum(theirs & ~mine)), int(np.sum(mine & ~theirs))
        return Gap(b - c, b + c, True)
    p, q = float(best.val_accuracy), float(row.val_accuracy)
    return Gap(n_val * (p - q), n_val * (p * (1 - q) + q * (1 - p)), False)


def tied_with_best(correct: np.ndarray, counts: np.ndarray, rule: str) -> np.ndarray:
    """`ties` for many draws of the validation images at once: `correct` holds each
    candidate's per-image results (rows cheapest first), `counts` how often each draw
    takes each image (a row of ones: the images as they are). Returns candidates x draws;
    each draw's best is its most accurate candidate, the cheapest of equals."""
    hits = correct.astype(np.float64)
    right = hits @ counts.T  # candidates x draws
    best = hits[np.argmax(right, axis=0)] * counts  # draws x images: the best's, weighted
    only_best = (1.0 - hits) @ best.T
    only_mine = hits @ ((1.0 - hits[np.argmax(right, axis=0)]) * counts).T
    return ties(only_best - only_mine, only_best + only_mine, rule)
