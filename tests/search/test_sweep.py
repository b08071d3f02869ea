"""The sweep stage: trials recorded in full, resumed, failures kept, studies never mixed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline import errors
from pipeline.data import datasets
from pipeline.paths import MANIFEST, SWEEP_DIR
from pipeline.preflight import load_params, parse_params
from pipeline.search import coordinator, pruning, studies, workers
from pipeline.train import phases
from tests.conftest import TINY_PARAMS


def run(params=None):
    params = params or load_params()
    study, meta = coordinator.sweep("small_cnn", params, datasets.read_manifest(MANIFEST))
    summary = coordinator.write_results("small_cnn", study, meta, SWEEP_DIR / "small_cnn")
    return study, summary


def with_trials(n: int, **search):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["sweep"]["n_trials"] = n
    raw["search"].update(search)
    return parse_params(raw)


def test_sweep_records_every_column_and_the_best(workspace):
    study, summary = run()
    table = pd.read_csv("results/sweep/small_cnn/trials.csv")
    assert list(table.columns) == studies.TRIAL_COLUMNS
    assert len(table) == 2 and set(table.state) == {"COMPLETE"}
    # a trial that trains only the head runs head_only_epochs (2 here), the others epochs (1)
    expected = table.fine_tunes.astype(str).map({"True": 1, "False": 2})
    assert table.val_accuracy_per_epoch.notna().all() and (table.epochs_run == expected).all()
    assert (table.trainable_params + table.frozen_params == table.total_params).all()
    assert (table.device_seconds > 0).all() and table.device_kind.isin(["CPU", "GPU"]).all()
    assert (table.train_flops > 0).all()
    assert table.plan.str.len().gt(0).all()
    best = json.loads((workspace / "results/sweep/small_cnn/best.json").read_text())
    assert best["val_accuracy"] == pytest.approx(table.val_accuracy.max())
    assert best == summary


def test_rerun_resumes_without_losing_finished_trials(workspace):
    first, _ = run(with_trials(2))
    finished = {t.number: t.value for t in first.trials}
    second, _ = run(with_trials(3))
    assert second.study_name == first.study_name
    assert len(second.trials) == 3
    assert {t.number: t.value for t in second.trials[:2]} == finished


def test_changing_the_search_space_starts_a_fresh_study(workspace):
    first, _ = run(with_trials(1))
    second, _ = run(with_trials(1, epochs=2))
    assert second.study_name != first.study_name
    assert len(second.trials) == 1


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(workspace, monkeypatch):
    real_fit = phases.fit
    calls = {"n": 0}

    def flaky_fit(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise phases.DivergedError("loss became nan in epoch 1")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(phases, "fit", flaky_fit)
    run(with_trials(2))
    table = pd.read_csv("results/sweep/small_cnn/trials.csv")
    assert table.state.tolist() == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "DivergedError: loss became nan" in table.fail_reason[0]


def test_repeated_failures_stop_with_a_clear_error(workspace, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(phases, "fit", broken_fit)
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["sweep"]["max_failures"] = 2
    with pytest.raises(errors.ThawError, match="2 trials failed in a row.*out of memory"):
        run(parse_params(raw))


def test_trials_of_the_same_structure_reuse_one_traced_step(workspace, capsys):
    run(with_trials(4, strategies=["head_only"], head_units=[8]))
    err = capsys.readouterr().err
    assert "train steps: 1 traced, 3 reused" in err
    # one forward pass per split fills every cut: 2 splits x 2 cuts, once, then memory hits
    assert "4 arrays computed" in err and "0 disk hits" in err


def test_status_reports_progress_and_best(workspace, capsys):
    from pipeline import cli

    run()
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "2/2 complete, 0 pruned (cap 6 finished); 0 failed; 0 running" in out
    assert f"finished per worker: {workers.label()} 2" in out  # the sweep ran in this process
    assert "best val" in out and "trainable parameters" in out


@pytest.mark.parametrize(
    "strategy",
    [
        "head_only",
        "freeze_depth",
        "last_n_layers",
        "by_name",
        "gradual",
        "lp_ft",
        "bn_bias_only",
        "surgical",
    ],
)
def test_every_strategy_runs_from_params(workspace, strategy):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["search"].update(
        strategies=[strategy], epochs=2, by_name=["block1_*"], discriminative=[True]
    )
    raw["sweep"]["n_trials"] = 1
    run(parse_params(raw))
    row = pd.read_csv("results/sweep/small_cnn/trials.csv").iloc[0]
    assert row.state == "COMPLETE" and row.strategy == strategy
    assert row.max_trainable_params >= row.trainable_params > 0
    assert json.loads(row.params)["strategy"] == strategy


def test_a_backbones_own_by_name_list_is_used(workspace):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["search"].update(strategies=["by_name"], epochs=1, by_name=["no_such_layer"])
    raw["backbones"]["small_cnn"]["by_name"] = ["block1_*", "block2_conv1"]
    raw["sweep"]["n_trials"] = 1
    run(parse_params(raw))
    row = pd.read_csv("results/sweep/small_cnn/trials.csv").iloc[0]
    assert row.state == "COMPLETE" and "(block1_*, block2_conv1)" in row.plan


class PruneFromSecondEpoch:
    """A pruner that stops every trial once it has reported two epochs."""

    def prune(self, study, trial) -> bool:
        return trial.last_step is not None and trial.last_step >= 1


def test_every_strategy_gets_its_completed_trials_and_pruned_ones_come_on_top(workspace):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["search"].update(strategies=["head_only", "lp_ft", "surgical"], epochs=2)
    raw["sweep"].update(n_trials=6, min_trials_per_strategy=2)
    raw["sweep"]["pruner"] = {"kind": "median", "warmup_epochs": 0, "startup_trials": 1}
    run(parse_params(raw))
    table = pd.read_csv("results/sweep/small_cnn/trials.csv")
    # the stratified start-up runs in full: the pruner waits for each strategy's minimum
    assert (table.state == "COMPLETE").all() and len(table) == 6
    assert table.strategy.value_counts().to_dict() == {"head_only": 2, "lp_ft": 2, "surgical": 2}
    assert table.strategy.iloc[:3].tolist() == ["head_only", "lp_ft", "surgical"]  # stratified
    lp_ft = table[table.strategy == "lp_ft"]
    assert (lp_ft.last_phase_from == 1).all()  # the pruner judges its fine-tuning phase only


def test_pruned_trials_are_recorded_with_the_epoch_they_reached(workspace, monkeypatch):
    import optuna

    monkeypatch.setattr(
        coordinator,
        "make_pruner",
        lambda *_: type("P", (PruneFromSecondEpoch, optuna.pruners.BasePruner), {})(),
    )
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["sweep"].update(n_trials=3, max_trials=3)  # every trial pruned: the cap ends the sweep
    raw["search"].update(epochs=5, head_only_epochs=5, strategies=["freeze_depth"])
    params = parse_params(raw)
    study, _ = coordinator.sweep("small_cnn", params, datasets.read_manifest(MANIFEST))
    table = studies.trials_table(study, "small_cnn")
    assert list(table.state) == ["PRUNED"] * 3  # pruned trials count as finished
    assert (table.pruned_at_epoch == 2).all() and (table.epochs_run == 2).all()
    assert (table.stopped == "pruned").all() and (table.device_seconds > 0).all()
    assert table.val_accuracy.notna().all()  # the best epoch before the stop


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("median", "StrategyMedianPruner"), ("hyperband", "PhaseGate"), ("none", "NopPruner")],
)
def test_the_pruner_comes_from_params(kind, expected):
    from pipeline.config import PrunerParams

    pruner = pruning.make_pruner(PrunerParams(kind=kind, startup_trials=3), 10, 8)
    assert type(pruner).__name__ == expected
    if kind == "median":
        assert pruner.startup_trials == 8  # a strategy's minimum runs in full first
    if kind == "hyperband":
        assert type(pruner.inner).__name__ == "HyperbandPruner"


def test_a_sweep_trains_on_cached_activations(workspace):
    run(with_trials(3, strategies=["head_only", "freeze_depth"]))
    table = pd.read_csv("results/sweep/small_cnn/trials.csv")
    frozen = table.frozen_fraction > 0
    assert (table.cached_phases[frozen] == 1).all() and (table.cached_phases[~frozen] == 0).all()
