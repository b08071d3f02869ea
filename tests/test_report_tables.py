"""The report's headline: seeds aggregated, Pareto fronts marked per backbone and overall."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import report_tables


def run(backbone, kind, rank, accuracies, params, seconds, trial=None):
    return [
        {
            "backbone": backbone,
            "kind": kind,
            "rank": rank,
            "trial": trial,
            "seed": seed,
            "plan": f"{kind} {rank}",
            "head_units": 0,
            "learning_rate": 1e-3,
            "epochs": 5,
            "val_accuracy": 0.5,
            "test_accuracy": accuracy,
            "trainable_params": params,
            "total_params": 1000,
            "device_seconds": seconds,
            "device": "cpu",
            "device_kind": "CPU",
            "train_flops": 10,
        }
        for seed, accuracy in enumerate(accuracies)
    ]


@pytest.fixture
def runs() -> pd.DataFrame:
    return pd.DataFrame(
        run("a", "transfer", 1, [0.88, 0.92], 100, 1.0, trial=4)
        + run("a", "transfer", 2, [0.80, 0.80], 50, 2.0, trial=7)
        + run("a", "scratch", None, [0.84, 0.86], 200, 3.0)
        + run("", "linear_pixels", None, [0.95, 0.95], 1000, 0.1)
    )


def test_headline_aggregates_seeds(runs):
    table = report_tables.headline(runs).set_index("configuration")
    first = table.loc["#1 (trial 4)"]
    assert first.test_accuracy_mean == pytest.approx(0.90)
    assert first.test_accuracy_sd == pytest.approx(0.0283, abs=1e-4)  # sample sd of .88, .92
    assert first.seeds == 2 and first.backbone == "a"
    assert list(table.index) == ["linear on pixels", "#1 (trial 4)", "scratch baseline",
                                 "#2 (trial 7)"]  # fmt: skip


def test_fronts_against_parameters_and_time(runs):
    table = report_tables.headline(runs).set_index("configuration")
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
    metrics = report_tables.metrics(report_tables.headline(runs))
    assert set(metrics) == {"a", "a_scratch", "linear_pixels"}
    assert metrics["a"]["test_accuracy_mean"] == pytest.approx(0.9)
    assert metrics["a"]["trainable_params"] == 100


def test_device_time_is_called_gpu_time_only_on_a_gpu():
    assert report_tables.device_label(["CPU", "CPU"]) == "CPU seconds"
    assert report_tables.device_label(["GPU"]) == "GPU seconds"
    assert report_tables.device_label(["GPU", "CPU"]) == "device seconds"


def test_verdicts_weigh_each_gap_against_its_noise(runs):
    table = report_tables.headline(runs)
    verdicts = report_tables.verdicts(table).set_index("against")
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
    again = report_tables.verdicts(report_tables.headline(three)).set_index("against")
    # sd 0.01 a side: se = sqrt(2 * 0.01**2 / 3) = 0.00816, t = 12.2 on 4 df
    assert again.loc["scratch", "se"] == pytest.approx(0.008165, abs=1e-5)
    assert again.loc["scratch", "p"] < 0.001 and again.loc["scratch", "verdict"] == "paid"
    # -0.04 against a baseline with sd 0.03: t = -2.19 on about 2.4 df
    assert again.loc["linear on pixels", "verdict"] == "within noise"
    levels = {"transfer": 0.9, "scratch": 0.8, "linear_pixels": 1.0}
    steady = three.assign(test_accuracy=three.kind.map(levels))  # no spread at all
    last = report_tables.verdicts(report_tables.headline(steady)).set_index("against")
    assert last.loc["scratch", "p"] == 0 and last.loc["scratch", "verdict"] == "paid"
    assert last.loc["linear on pixels", "verdict"] == "lost"  # 0.9 vs 1.0


@pytest.mark.parametrize(
    "weights, origin, how",
    [
        ("source", "pretrained here on source classes [0, 1]", "its own classifier"),
        ("imagenet", "ImageNet weights (keras.applications)", "a linear probe"),
        ("my.keras", "weights from the file `my.keras`", "a linear probe"),
    ],
)
def test_provenance_says_where_the_weights_came_from(weights, origin, how):
    from pipeline.report import weights_origin

    text = weights_origin({"weights": weights, "source_accuracy": 0.9}, [0, 1])
    assert text.startswith(f"{origin}; accuracy on the source classes 0.900 ({how}")


def test_device_time_is_the_median_over_seeds_so_one_off_tracing_drops_out():
    runs = pd.DataFrame(run("a", "transfer", 1, [0.9, 0.9, 0.9], 100, 1.0, trial=4))
    runs.loc[0, "device_seconds"] = 5.0  # the first seed traced the step
    assert report_tables.headline(runs).device_seconds.iloc[0] == 1.0


def test_a_baseline_tuned_to_the_end_of_its_rate_grid_is_flagged(runs):
    from pipeline.report import edge_note

    table = report_tables.headline(runs)  # every row ran at 1e-3
    assert edge_note(table, [1e-4, 1e-3, 1e-2]) == ""
    note = edge_note(table, [1e-4, 1e-3])
    assert "a scratch baseline (1.0e-03, the highest)" in note
    assert "pixels linear on pixels" in note and "#1" not in note  # transfer was searched
