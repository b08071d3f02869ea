"""How far to trust a gap or a pick: the report's statistics.

A gap in test accuracy between two configurations is tested with a paired bootstrap over
the test images where both kept per-image results, else with Welch's t-test over seeds
(`compare`). How stable the recommendation is comes from re-applying the selection rule
to resampled validation images (`pick_stability`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.evaluate.ranking import LINEAR_PIXELS, SCRATCH, TRANSFER
from pipeline.report import selection

ALPHA = 0.05  # two-sided level of the verdicts' test


def welch(a, b) -> tuple[float, float, float]:
    """Gap between two rows' mean test accuracies, its standard error over seeds, and
    the two-sided p-value of Welch's t-test (unequal variances; with three seeds a
    side the t distribution has few degrees of freedom, so twice the SE is too lenient)."""
    from scipy import stats

    gap = a.test_accuracy_mean - b.test_accuracy_mean
    se = math.sqrt(a.test_accuracy_sd**2 / a.seeds + b.test_accuracy_sd**2 / b.seeds)
    if se == 0:  # no spread over seeds on either side: any gap is beyond seed noise
        return gap, se, 0.0 if gap else 1.0
    p = stats.ttest_ind_from_stats(
        a.test_accuracy_mean, a.test_accuracy_sd, a.seeds,
        b.test_accuracy_mean, b.test_accuracy_sd, b.seeds,
        equal_var=False,
    ).pvalue  # fmt: skip
    return gap, se, float(p)


def seeds_bits(bits: pd.Series) -> str:
    """Each seed's per-image correctness ("0110..."), joined by ";"."""
    return ";".join(str(b) for b in bits if isinstance(b, str) and b)


def per_image(row) -> np.ndarray | None:
    """Each test image's correctness averaged over the row's seeds (None: not recorded)."""
    seeds = [b for b in str(row.get("test_correct") or "").split(";") if b]
    if not seeds or len({len(b) for b in seeds}) != 1:
        return None
    return np.mean([[c == "1" for c in b] for b in seeds], axis=0)


BOOTSTRAP = 2000  # resamples of the test images in the paired bootstrap
PAIRED = "paired bootstrap over test images"
WELCH = "Welch over seeds"


def paired_bootstrap(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Gap in mean accuracy between two runs scored on the same images, its bootstrap
    standard error and two-sided p-value: resample images (with replacement), keep the
    pairs. Each image carries both runs' seeds, so the test set's own sampling noise and
    the seeds' are both in it, which Welch over seeds leaves out."""
    d = x - y
    if not np.any(d):
        return 0.0, 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(axis=1)
    p = 2 * min(np.mean(means <= 0), np.mean(means >= 0))
    return float(d.mean()), float(means.std(ddof=1)), float(min(1.0, max(p, 1 / BOOTSTRAP)))


def compare(a, b) -> tuple[float, float, float, str] | None:
    """a against b: the paired bootstrap where both have per-image results on the same
    test images, else Welch over seeds (two seeds a side at least); None: neither."""
    x, y = per_image(a), per_image(b)
    if x is not None and y is not None and len(x) == len(y):
        return (*paired_bootstrap(x, y), PAIRED)
    if a.seeds < 2 or b.seeds < 2:
        return None  # one seed has no spread to test against
    return (*welch(a, b), WELCH)


STABILITY_RESAMPLES = 1000
FRAGILE = 0.5  # a pick chosen in fewer than this share of the resamples is flagged


def pick_stability(table: pd.DataFrame, n_val: int, rule: str, seed: int = 0) -> pd.DataFrame:
    """How often the selection rule picks each candidate when the validation images are
    resampled with replacement (STABILITY_RESAMPLES times, seeded): on each resample the
    rule compares every candidate with that resample's best on the images drawn, paired
    as `selection.recommendation` does. Empty when fewer than two candidates kept
    per-image results."""
    pool = selection.candidates(table)  # cheapest first, so the first of those tied wins
    bits = [selection.val_bits(row, n_val) for _, row in pool.iterrows()]
    keep = [i for i, b in enumerate(bits) if b is not None]
    if len(keep) < 2 or not n_val:
        return pd.DataFrame()
    pool, correct = pool.iloc[keep].reset_index(drop=True), np.array([bits[i] for i in keep])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_val, np.full(n_val, 1 / n_val), size=STABILITY_RESAMPLES)
    tied = selection.tied_with_best(correct, counts, rule)  # candidates x resamples
    picked = np.argmax(tied, axis=0)  # the first (cheapest) tied row of each resample
    share = np.bincount(picked, minlength=len(pool)) / STABILITY_RESAMPLES
    return pool.assign(share=share, option=[_option(r) for _, r in pool.iterrows()])


def _option(row) -> str:
    """A candidate as stability counts it: its strategy, or the baseline's name."""
    if row.kind == TRANSFER:
        return str(row.strategy)
    return {SCRATCH: "scratch", LINEAR_PIXELS: "linear on pixels"}[row.kind]
