"""The report's tests share one small set of runs (factories.run)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.report.factories import run


@pytest.fixture
def runs() -> pd.DataFrame:
    return pd.DataFrame(
        run("a", "transfer", 1, [0.88, 0.92], 100, 1.0, trial=4)
        + run("a", "transfer", 2, [0.80, 0.80], 50, 2.0, trial=7)
        + run("a", "scratch", None, [0.84, 0.86], 200, 3.0)
        + run("", "linear_pixels", None, [0.95, 0.95], 1000, 0.1)
    )
