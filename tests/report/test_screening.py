"""The report's screen section: each candidate beside what the search and the final stage
measured at its cut, Kendall's tau, and whether the screen's first backbone won."""

from __future__ import annotations

import math

import pandas as pd

from pipeline.report import screening

SCREEN = pd.DataFrame(
    {
        "backbone": ["a", "a", "b", "b"],
        "image_size": [32, 32, 32, 32],
        "cut": [5, 9, 4, 8],
        "layer": ["a5", "a9", "b4", "b8"],
        "frozen_fraction": [0.5, 1.0, 0.6, 1.0],
        "logme": [-0.4, -0.3, -0.2, -0.1],
        "knn": [0.6, 0.7, 0.8, 0.9],
        "probe": [0.9, 0.8, 0.7, 0.6],
    }
)
TRIALS = pd.DataFrame(
    {
        "backbone": ["a", "a", "a", "b", "b", "b"],
        "trial": [0, 1, 2, 0, 1, 2],
        "state": ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "COMPLETE", "COMPLETE"],
        "image_size": [32] * 6,
        "frozen_fraction": [0.5, 1.0, 1.0, 0.6, 1.0, 1.0],
        "val_accuracy": [0.70, 0.75, 0.99, 0.80, 0.85, 0.90],
    }
)
RUNS = pd.DataFrame(
    {
        "backbone": ["b", "b", "a"],
        "kind": ["transfer", "transfer", "transfer"],
        "trial": [2, 2, 1],
        "test_accuracy": [0.8, 0.9, 0.7],
    }
)


def test_each_cut_meets_the_searchs_best_completed_trial_there_and_its_test():
    rows = screening.comparison(SCREEN, TRIALS, RUNS, "probe").set_index("layer")
    assert rows.loc["a9", "searched"] == 0.75  # the pruned 0.99 does not count
    assert rows.loc["b8", "searched"] == 0.90 and math.isclose(rows.loc["b8", "tested"], 0.85)
    assert rows.loc["a9", "tested"] == 0.7 and pd.isna(rows.loc["a5", "tested"])
    assert list(rows.sort_values("rank").index) == ["a5", "a9", "b4", "b8"]  # by probe


def test_tau_is_kendalls_tau_b_over_the_cuts_both_ran():
    rows = screening.comparison(SCREEN, TRIALS, RUNS, "probe")
    tau, n = screening.kendall(rows, "knn")
    assert n == 4 and math.isclose(tau, 1.0)  # knn orders the cuts as the search did
    tau, _ = screening.kendall(rows, "probe")
    assert math.isclose(tau, -1.0)
    assert math.isnan(screening.kendall(rows.head(2), "knn")[0])  # too few to rank


def test_the_sentence_says_whether_the_screen_picked_the_searchs_best_backbone():
    by_probe = screening.pair_comparison(SCREEN, TRIALS, "probe")
    assert "would have chosen another one" in screening.agreement(by_probe, TRIALS)
    by_knn = screening.pair_comparison(SCREEN, TRIALS, "knn")
    assert "**b** at 32 px first" in screening.agreement(by_knn, TRIALS)
    assert "would have chosen the same backbone" in screening.agreement(by_knn, TRIALS)
