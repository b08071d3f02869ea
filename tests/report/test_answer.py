"""The answer's words: why the pick was chosen, how stable it is, a baseline as the pick,
and baselines tuned to an end of their rate grid."""

from __future__ import annotations

import pandas as pd

from pipeline.report import answer, selection, statistics, tables
from tests.report.factories import tied_runs, with_val_bits


def test_a_cheaper_pick_within_one_standard_error_says_what_it_saves():
    table = tables.headline(tied_runs(linear_val=0.5))
    choice = selection.recommendation(table, n_val=80, rule="one_se")
    text = answer.why_chosen(choice)
    assert "tied with the best" in text and "14x fewer trainable parameters" in text
    assert "136x less time" in text


def test_a_baseline_as_the_pick_says_transfer_did_not_pay():
    table = tables.headline(tied_runs(linear_val=0.99))
    text = answer.recommendation_markdown(table, tables.strategy_winners(table), "CPU s",
                                          80, "one_se")  # fmt: skip
    assert text.startswith("- **Transfer did not pay here: use a linear model on pixels**")
    assert "**Did transfer pay here?** No: a baseline is the pick" in text


def test_the_pick_stability_is_worded_with_its_share_and_flagged_when_fragile():
    runs = with_val_bits(tied_runs(0.5), {3: 78, 5: 77, 8: 72, None: 40})
    table = tables.headline(runs)
    best = statistics.pick_stability(table, n_val=80, rule="best")
    share_best = dict(zip(best.trial.fillna(-1).astype(int), best.share))
    pick = selection.recommendation(table, 80, "best").pick
    text = answer.stability_markdown(best, pick, 80)
    assert f"picks it in {share_best[3]:.0%}" in text
    assert ("Fragile" in text) == (share_best[3] < 0.5)


def test_without_per_image_results_the_stability_line_says_not_measured():
    table = tables.headline(tied_runs(0.5))
    pick = selection.recommendation(table, 80, "one_se").pick
    assert "not measured" in answer.stability_markdown(pd.DataFrame(), pick, 80)


def test_a_baseline_tuned_to_the_end_of_its_rate_grid_is_flagged(runs):
    table = tables.headline(runs)  # every row ran at 1e-3
    assert answer.edge_note(table, [1e-4, 1e-3, 1e-2]) == ""
    note = answer.edge_note(table, [1e-4, 1e-3])
    assert "a scratch baseline (1.0e-03, the highest)" in note
    assert "pixels linear on pixels" in note and "#1" not in note  # transfer was searched


def _card(backbone: str, configuration: str, differing: int = 0) -> dict:
    file = {
        "file": "model.keras",
        "bytes": 2_000_000,
        "test_accuracy": 0.87,
        "correct": 87,
        "examples": 100,
        "same_as_final": 100,
        "agrees_with_keras": 1.0,
        "latency_b1": {"median_ms": 5.0, "min_ms": 4.5, "max_ms": 6.0, "repeats": 20},
    }
    return {
        "configuration": {"backbone": backbone, "configuration": configuration},
        "exported_seed": 10_000,
        "final_stage": {"test_accuracy": 0.87},
        "reproduced": {"differing_test_images": differing, "examples": 100},
        "files": {"keras": file, "tflite_int8": {"file": "model_int8.tflite",
                                                  "error": "ValueError: no kernel"}},
        "measured_on": {"device": "Some CPU", "kind": "CPU", "cores": 2, "threads": 2},
    }  # fmt: skip


def test_the_files_section_shows_the_export_of_this_pick_and_flags_another_one():
    table = tables.headline(tied_runs(linear_val=0.5))
    pick = selection.recommendation(table, 80, "one_se").pick  # trial 5, head-only
    text = answer.exported_markdown(_card(pick.backbone, pick.configuration), table, 80,
                                    "one_se")  # fmt: skip
    assert "every test image scored as in the final stage's run" in text and "Some CPU" in text
    assert "| Keras (.keras) | `model.keras` | 2.00 MB | 0.8700 (87/100) | 100/100 |" in text
    assert "not written: ValueError: no kernel" in text  # a failed format keeps its reason
    stale = answer.exported_markdown(_card("m", "#1 (trial 3)"), table, 80, "one_se")
    assert "holds another configuration" in stale
    differs = answer.exported_markdown(_card(pick.backbone, pick.configuration, 3), table, 80,
                                       "one_se")  # fmt: skip
    assert "**3 test images scored otherwise" in differs
    assert "Not exported yet" in answer.exported_markdown(None, table, 80, "one_se")


def test_running_costs_join_each_transferred_row_by_its_architecture():
    runs = tied_runs(linear_val=0.5).assign(image_size=224)
    costs = pd.DataFrame({"backbone": ["m"], "image_size": [224], "head_units": [0],
                          "keras_bytes": [9e6], "latency_b1_ms": [16.0]})  # fmt: skip
    table = tables.headline(runs, costs)
    transfer = table[table.kind == "transfer"]
    assert (transfer.latency_b1_ms == 16.0).all() and (transfer.keras_bytes == 9e6).all()
    assert table[table.kind == "linear_pixels"].latency_b1_ms.isna().all()
    assert table.front_latency_overall.sum() >= 1  # a front over the timed rows
    assert tables.headline(runs).latency_b1_ms.isna().all()  # before any export
