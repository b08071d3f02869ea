"""The report's statistics: each gap weighed against its noise (Welch over seeds), and how
often the selection rule picks each candidate on resampled validation images."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.report import statistics, tables
from tests.report.factories import run, tied_runs, with_val_bits


def test_verdicts_weigh_each_gap_against_its_noise(runs):
    table = tables.headline(runs)
    verdicts = tables.verdicts(table).set_index("against")
    # 0.90 ± 0.028 vs scratch 0.85 ± 0.014 over 2 seeds: gap 0.05, se 0.022, t 2.24 -- beyond
    # twice the se, but Welch's df is 1.47 and p about 0.2: two seeds cannot tell
    assert verdicts.loc["scratch", "gap"] == pytest.approx(0.05)
    assert verdicts.loc["scratch", "se"] == pytest.approx(0.02236, abs=1e-4)
    assert 0.15 < verdicts.loc["scratch", "p"] < 0.3
    assert verdicts.loc["scratch", "verdict"] == "within noise"
    three = pd.DataFrame(
        run("a", "transfer", 1, [0.90, 0.91, 0.92], 100, 1.0, trial=4)
        + run("a", "scratch", None, [0.80, 0.81, 0.82], 200, 3.0)
        + run("", "linear_pixels", None, [0.92, 0.95, 0.98], 1000, 0.1)
    )
    again = tables.verdicts(tables.headline(three)).set_index("against")
    # sd 0.01 a side: se = sqrt(2 * 0.01**2 / 3) = 0.00816, t = 12.2 on 4 df
    assert again.loc["scratch", "se"] == pytest.approx(0.008165, abs=1e-5)
    assert again.loc["scratch", "p"] < 0.001 and again.loc["scratch", "verdict"] == "paid"
    # -0.04 against a baseline with sd 0.03: t = -2.19 on about 2.4 df
    assert again.loc["linear on pixels", "verdict"] == "within noise"
    levels = {"transfer": 0.9, "scratch": 0.8, "linear_pixels": 1.0}
    steady = three.assign(test_accuracy=three.kind.map(levels))  # no spread at all
    last = tables.verdicts(tables.headline(steady)).set_index("against")
    assert last.loc["scratch", "p"] == 0 and last.loc["scratch", "verdict"] == "paid"
    assert last.loc["linear on pixels", "verdict"] == "lost"  # 0.9 vs 1.0


def test_pick_stability_counts_how_often_the_rule_picks_each_candidate():
    runs = with_val_bits(tied_runs(0.5), {3: 78, 5: 77, 8: 72, None: 40})
    table = tables.headline(runs)
    stability = statistics.pick_stability(table, n_val=80, rule="one_se")
    share = dict(zip(stability.trial.fillna(-1).astype(int), stability.share))
    assert sum(share.values()) == pytest.approx(1.0)
    # trial 5 misses one image trial 3 gets: tied (within 1.4 images of 80) unless a
    # resample draws that image twice or more, about 26% of the time
    assert 0.5 < share[5] and share[5] + share[3] > 0.95 and share[-1] == 0.0
    best = statistics.pick_stability(table, n_val=80, rule="best")
    share_best = dict(zip(best.trial.fillna(-1).astype(int), best.share))
    # trial 3 is right on one image more: picked when a resample draws it (1 - (79/80)^80)
    assert share_best[3] == pytest.approx(1 - (79 / 80) ** 80, abs=0.05)
    assert share_best[3] + share_best[5] == pytest.approx(1.0)
    assert share[5] > share_best[5]  # the rule moves picks to the cheaper of the tied


def test_without_per_image_results_stability_is_not_measured():
    table = tables.headline(tied_runs(0.5))
    assert statistics.pick_stability(table, n_val=80, rule="one_se").empty
