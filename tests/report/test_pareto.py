"""Pareto fronts on hand-made tables."""

from __future__ import annotations

import math

import pandas as pd

from pipeline.report.pareto import pareto_front


def test_the_front_keeps_exactly_the_undominated_rows():
    table = pd.DataFrame(
        {
            "name": ["a", "b", "c", "d", "e", "f"],
            "accuracy": [0.90, 0.80, 0.85, 0.70, 0.90, 0.60],
            "params": [1000, 100, 500, 100, 2000, 10],
        }
    )
    # a: best accuracy at 1000. b: 0.80 for 100 beats d (same cost, less accurate).
    # c: between a and b. e: as accurate as a but dearer. f: cheapest of all.
    front = pareto_front(table, "accuracy", "params")
    assert list(table.name[front]) == ["a", "b", "c", "f"]


def test_identical_rows_are_both_on_the_front_and_missing_values_never():
    table = pd.DataFrame({"accuracy": [0.5, 0.5, math.nan, 0.4], "seconds": [2.0, 2.0, 1.0, 3.0]})
    assert list(pareto_front(table, "accuracy", "seconds")) == [True, True, False, False]


def test_fronts_per_group_and_overall_differ():
    table = pd.DataFrame(
        {
            "backbone": ["x", "x", "y", "y"],
            "accuracy": [0.9, 0.7, 0.8, 0.6],
            "params": [100, 10, 1000, 50],
        }
    )
    per_group = pareto_front(table, "accuracy", "params", by="backbone")
    overall = pareto_front(table, "accuracy", "params")
    assert list(per_group) == [True, True, True, True]
    assert list(overall) == [True, True, False, False]  # x beats both y rows
