"""What a run is and how trials rank: the names every stage after the sweep shares.

A leaf (pandas only), so that the report reads results without importing the code
that trains them.
"""

from __future__ import annotations

import pandas as pd

TRANSFER = "transfer"  # a run of a transferred configuration (a search trial or the probe)
SCRATCH = "scratch"  # the backbone's architecture from a random initialisation
LINEAR_PIXELS = "linear_pixels"  # softmax regression on raw pixels


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
