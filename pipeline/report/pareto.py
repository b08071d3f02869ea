"""Pareto fronts: the configurations no other one beats on both accuracy and cost.

A row is dominated when another row is at least as accurate and at most as
costly, and strictly better on one of the two. Identical rows do not dominate
each other, so both stay on the front. Rows with a missing value are never on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def non_dominated(accuracy: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Boolean mask of the points on the front (higher accuracy, lower cost is better)."""
    accuracy, cost = np.asarray(accuracy, float), np.asarray(cost, float)
    valid = ~(np.isnan(accuracy) | np.isnan(cost))
    a, c = accuracy[valid], cost[valid]
    at_least_as_good = (a[None, :] >= a[:, None]) & (c[None, :] <= c[:, None])
    strictly_better = (a[None, :] > a[:, None]) | (c[None, :] < c[:, None])
    mask = np.zeros(len(accuracy), dtype=bool)
    mask[valid] = ~(at_least_as_good & strictly_better).any(axis=1)
    return mask


def pareto_front(table: pd.DataFrame, accuracy: str, cost: str, by: str | None = None) -> pd.Series:
    """For each row, whether it is on the front of its `by` group (or of the whole table)."""
    front = pd.Series(False, index=table.index)
    for _, group in table.groupby(by, sort=False) if by else [(None, table)]:
        mask = non_dominated(group[accuracy].to_numpy(), group[cost].to_numpy())
        front[group.index] = mask
    return front
