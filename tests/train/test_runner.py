"""The one seam that runs a configuration: a search trial, read back from trials.csv into a
RunConfig (no tuner) and run again, is the same run; a final run trains on train+val and
is tested once."""

from __future__ import annotations

import json

import pandas as pd

from pipeline.data import datasets
from pipeline.data.datasets import TRAINVAL
from pipeline.models import configuration, flops
from pipeline.paths import MANIFEST, SWEEP_DIR
from pipeline.preflight import parse_params
from pipeline.search import coordinator
from pipeline.train import runner
from pipeline.train.context import Contexts
from tests.conftest import TINY_PARAMS


def swept_trials(strategies: list[str]) -> tuple[pd.DataFrame, Contexts]:
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["sweep"].update(n_trials=len(strategies), min_trials_per_strategy=1)
    raw["search"].update(epochs=2, strategies=strategies)
    params = parse_params(raw)
    manifest = datasets.read_manifest(MANIFEST)
    study, meta = coordinator.sweep("small_cnn", params, manifest)
    coordinator.write_results("small_cnn", study, meta, SWEEP_DIR / "small_cnn")
    trials = pd.read_csv(SWEEP_DIR / "small_cnn" / "trials.csv", dtype={"val_correct": str})
    return trials, Contexts("small_cnn", params, manifest, ("train", "val", TRAINVAL, "test"))


def test_a_recorded_trial_run_again_through_the_seam_is_the_same_run(workspace):
    trials, contexts = swept_trials(["head_only", "freeze_depth"])
    done = trials[trials.state == "COMPLETE"]
    assert set(done.strategy) == {"head_only", "freeze_depth"}
    for _, row in done.iterrows():
        ctx = contexts.at(configuration.recorded_size(row))
        config = configuration.from_row(row, ctx.size, ctx.search)
        outcome = runner.run(ctx, config, ctx.seed + int(row["trial"]))
        per_epoch = ";".join(f"{a:.4f}" for a in outcome.result.val_accuracy)
        assert per_epoch == row["val_accuracy_per_epoch"], row["trial"]
        assert outcome.result.val_correct == row["val_correct"]
        assert outcome.result.trainable_params == row["trainable_params"]
        assert outcome.train_flops == row["train_flops"]
        assert outcome.plan.description == row["plan"]


def test_a_final_run_trains_on_train_and_val_and_is_tested_once(workspace):
    trials, contexts = swept_trials(["head_only"])
    row = trials[trials.state == "COMPLETE"].iloc[0]
    ctx = contexts.at(configuration.recorded_size(row))
    config = configuration.from_row(row, ctx.size, ctx.search)
    search = runner.run(ctx, config, seed=7)
    final = runner.run(ctx, config, seed=7, fit=runner.FINAL)
    assert final.result.val_accuracy == []  # no per-epoch validation, no early stopping
    assert final.result.phase_epochs == [p.epochs for p in final.plan.phases]
    assert len(final.result.test_correct) == len(ctx.splits["test"][1])
    assert search.result.test_accuracy is None
    # head only: a training step per example over the split trained on, and a forward pass
    # over validation after each epoch only where the run is validated
    costs = ctx.layer_costs + flops.head_costs(ctx.feature_dims, config.head_units, ctx.num_classes)
    step = flops.training_flops(costs, [c.name for c in costs if c.name.startswith("head_")])
    forward = sum(c.forward for c in costs)
    n_train, n_val = len(ctx.splits["train"][1]), len(ctx.splits["val"][1])
    n_trainval = len(ctx.splits[TRAINVAL][1])
    assert n_trainval == n_train + n_val
    assert final.train_flops == sum(final.result.phase_epochs) * n_trainval * step
    epochs = sum(search.result.phase_epochs)
    assert search.train_flops == epochs * (n_train * step + n_val * forward)
