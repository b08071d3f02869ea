"""What a run is, how trials rank and which rates a baseline tries: the final stage's
protocol as the report states it.

A leaf (NumPy and pandas only), so that the report reads results without importing the
code that trains them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.config import SearchParams

TRANSFER = "transfer"  # a run of a transferred configuration (a search trial or the probe)
SCRATCH = "scratch"  # the backbone's architecture from a random initialisation
LINEAR_PIXELS = "linear_pixels"  # softmax regression on raw pixels
PROBE = "linear_probe"  # the converged linear probe's strategy name (evaluate/probe.py)

RATE_POINTS = 5  # the baselines' learning-rate grid: a factor of about 4 apart on the default


def rate_grid(search: SearchParams) -> list[float]:
    """The rates a baseline tries: RATE_POINTS evenly spaced on a log scale over the
    search's own range."""
    rates = np.geomspace(search.learning_rate.low, search.learning_rate.high, RATE_POINTS)
    return [float(x) for x in rates]


def by_rank(trials: pd.DataFrame) -> pd.DataFrame:
    """Best validation accuracy first; on a tie (100 images leave many) the lower validation
    loss, then fewer trainable parameters, then the earlier trial."""
    if "val_loss" not in trials:  # a study from before val_loss was recorded
        trials = trials.assign(val_loss=float("nan"))
    return trials.sort_values(
        ["val_accuracy", "val_loss", "trainable_params", "trial"],
        ascending=[False, True, True, True],
        na_position="last",
    )
