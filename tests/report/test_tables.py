"""The report's tables: seeds aggregated, Pareto fronts marked per backbone and overall,
the strategies' summary and winners, metrics.json."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.report import tables
from tests.report.factories import run, strategies_runs


def test_headline_aggregates_seeds(runs):
    table = tables.headline(runs).set_index("configuration")
    first = table.loc["#1 (trial 4)"]
    assert first.test_accuracy_mean == pytest.approx(0.90)
    assert first.test_accuracy_sd == pytest.approx(0.0283, abs=1e-4)  # sample sd of .88, .92
    assert first.seeds == 2 and first.backbone == "a"
    assert list(table.index) == ["linear on pixels", "#1 (trial 4)", "scratch baseline",
                                 "#2 (trial 7)"]  # fmt: skip


def test_fronts_against_parameters_and_time(runs):
    table = tables.headline(runs).set_index("configuration")
    # parameters: scratch is beaten by #1 (more accurate, fewer parameters)
    assert table.front_params_overall.to_dict() == {
        "linear on pixels": True,
        "#1 (trial 4)": True,
        "scratch baseline": False,
        "#2 (trial 7)": True,
    }
    # time: the linear model is the most accurate and the fastest, so it alone is overall
    assert table.front_time_overall.sum() == 1 and table.front_time_overall["linear on pixels"]
    own = table.front_time_backbone
    assert own["#1 (trial 4)"] and not own["#2 (trial 7)"] and not own["scratch baseline"]
    assert not own["linear on pixels"]  # it belongs to no backbone


def test_metrics_name_each_backbone_and_baseline(runs):
    metrics = tables.metrics(tables.headline(runs))
    assert set(metrics) == {"a", "a_scratch", "linear_pixels"}
    assert metrics["a"]["test_accuracy"] == pytest.approx(0.9)
    assert metrics["a"]["trainable_params"] == 100
    assert metrics["a"]["strategy"] == "freeze_depth" and metrics["a"]["frozen_share"] == 0.25
    assert set(metrics["a_scratch"]) == {"test_accuracy", "test_accuracy_sd"}  # small
    assert sum(len(v) for v in metrics.values()) == 6 + 2 + 2


def test_device_time_is_called_gpu_time_only_on_a_gpu():
    assert tables.device_label(["CPU", "CPU"]) == "CPU seconds"
    assert tables.device_label(["GPU"]) == "GPU seconds"
    assert tables.device_label(["GPU", "CPU"]) == "device seconds"


def test_device_time_is_the_median_over_seeds_so_one_off_tracing_drops_out():
    runs = pd.DataFrame(run("a", "transfer", 1, [0.9, 0.9, 0.9], 100, 1.0, trial=4))
    runs.loc[0, "device_seconds"] = 5.0  # the first seed traced the step
    assert tables.headline(runs).device_seconds.iloc[0] == 1.0


def test_seeds_that_disagree_flag_the_configuration_unstable():
    runs = pd.DataFrame(
        run("a", "transfer", 1, [0.371, 0.907, 0.795], 100, 1.0, trial=4)
        + run("a", "transfer", 2, [0.90, 0.92, 0.95], 100, 1.0, trial=5)
    )
    table = tables.headline(runs).set_index("trial")
    assert table.unstable[4] and not table.unstable[5]  # spans 0.54 and 0.05 (limit 0.10)


def test_the_winning_strategy_on_test_against_the_runner_up():
    winners = tables.strategy_winners(tables.headline(strategies_runs(0.2)))
    a = winners.set_index("backbone").loc["a"]
    # trial 7 scores highest but is not a strategy's best: strategies compare by their best
    assert a.winner == "freeze_depth" and a.runner_up == "head_only"
    assert a.gap == pytest.approx(0.21) and a.p < 0.05 and a.verdict == "wins"
    close = tables.strategy_winners(tables.headline(strategies_runs(0.005)))
    assert close.set_index("backbone").loc["a", "verdict"] == "within noise"
    assert winners.set_index("backbone").loc["b", "verdict"] == "only strategy"


def test_the_strategy_summary_counts_trials_and_flags_too_few():
    trials = pd.DataFrame(
        [{"backbone": "a", "trial": i, "strategy": "freeze_depth", "state": "COMPLETE",
          "val_accuracy": v, "plan": "p", "trainable_params": 10}
         for i, v in enumerate([0.5, 0.6, 0.7, 0.8, 0.9])]
        + [{"backbone": "a", "trial": 9, "strategy": "lp_ft", "state": "PRUNED",
            "val_accuracy": 0.3, "plan": "q", "trainable_params": 10}]
    )  # fmt: skip
    table = tables.headline(strategies_runs(0.2))
    summary = tables.strategy_summary(trials, table, ["freeze_depth", "lp_ft", "gradual"])
    rows = summary.set_index("strategy")
    assert list(rows.index) == ["freeze_depth", "lp_ft", "gradual"]  # every strategy, even unrun
    assert rows.completed.tolist() == [5, 0, 0] and rows.pruned.tolist() == [0, 1, 0]
    assert rows.best_val["freeze_depth"] == 0.9 and rows.median_val["freeze_depth"] == 0.7
    assert rows.too_few.tolist() == [False, True, True]  # FEW_TO_COMPARE = 5
    assert rows.test_mean["freeze_depth"] == pytest.approx(0.91)
    tied = pd.concat([trials, trials.iloc[[4]].assign(trial=7)])  # 4 and 7 both at 0.9
    tied = tied.assign(trainable_params=[50, 50, 50, 50, 60, 10, 40])
    summary = tables.strategy_summary(tied, table, ["freeze_depth"])
    assert summary.best_trial.iloc[0] == 7  # a tie on val goes to fewer parameters, as in final
