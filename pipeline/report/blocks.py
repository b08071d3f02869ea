"""Words shared by the report's sections and its plots."""

from __future__ import annotations

import pandas as pd


def curve_seeds(curve: pd.DataFrame) -> str:
    """How the curve's points were averaged (report.curve_seeds): the report's and plot's words."""
    seeds = int(curve.seeds.max()) if len(curve) else 0
    return "one seed" if seeds < 2 else f"mean ± sd over {seeds} seeds"
