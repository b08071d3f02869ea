"""The final stage: top configurations retrained on train+val, tested once; baselines; curve.

Tests marked slow run the whole stage (`retrain.run_final`);
most of them retrain from one shared sweep (`after_sweep`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import datasets, image_store
from pipeline.evaluate import baselines, ranking, retrain
from pipeline.models.configuration import RunConfig, StrategyChoice
from pipeline.models.strategies import Phase, StrategyPlan
from pipeline.paths import FINAL_DIR, MANIFEST, SWEEP_DIR
from pipeline.preflight import parse_params
from pipeline.search import coordinator
from pipeline.train import context, loop
from tests.conftest import TINY_PARAMS


def tiny(**report):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["sweep"]["n_trials"] = 3
    raw["search"].update(epochs=2, strategies=["head_only", "freeze_depth"])
    raw["report"].update(report)
    return parse_params(raw)


def swept(params):
    manifest = datasets.read_manifest(MANIFEST)
    study, meta = coordinator.sweep("small_cnn", params, manifest)
    coordinator.write_results("small_cnn", study, meta, SWEEP_DIR / "small_cnn")
    return manifest


@pytest.fixture(scope="module")
def _swept_workspace(prepared_workspace, tmp_path_factory) -> Path:
    """The prepared workspace after the sweep of `tiny()`, for the tests below that only
    retrain: the report keys they vary are no part of a study (studies.identity), so each
    of them would run this same sweep. Read-only: tests take `after_sweep`."""
    folder = tmp_path_factory.mktemp("swept") / "ws"
    shutil.copytree(prepared_workspace, folder)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        swept(tiny())
    finally:
        os.chdir(cwd)
    return folder


@pytest.fixture
def after_sweep(_swept_workspace, tmp_path, monkeypatch) -> dict:
    """A private copy of the swept workspace, as the working directory; its manifest."""
    folder = tmp_path / "ws"
    shutil.copytree(_swept_workspace, folder)
    monkeypatch.chdir(folder)
    return datasets.read_manifest(MANIFEST)


def test_replay_keeps_each_phase_as_run_and_stops_at_the_best_epoch():
    plan = StrategyPlan(
        "lp_ft", (Phase(10, (), 0.01), Phase(10, ("a",), 0.001)), "probe then tune", 0.5, True
    )
    # the probe stopped early (plateau) after 8 epochs; the best came 4 epochs into tuning
    replayed = retrain.replay_schedule(plan, [8, 10], 12)
    assert [(p.epochs, p.trainable_layers) for p in replayed.phases] == [(8, ()), (4, ("a",))]
    assert [p.epochs for p in retrain.replay_schedule(plan, [8, 10], 5).phases] == [5]
    assert retrain.best_epoch("0.2000;0.6000;0.6000;0.4000") == 2


def test_a_retraining_cut_short_by_the_best_epoch_says_what_ran():
    from types import SimpleNamespace

    plan = StrategyPlan(
        "lp_ft", (Phase(5, (), 0.01), Phase(5, ("a",), 0.001)), "linear probe 5 epochs, then x",
        0.5, True,
    )  # fmt: skip
    row = {"plan": plan.description, "frozen_fraction": 0.5}
    info = SimpleNamespace(fraction_frozen=lambda trainable: 0.5 if trainable else 1.0)
    probe_only = retrain.replay_schedule(plan, [5, 5], 3)
    text, frozen = retrain.what_ran(row, probe_only, plan, info)
    assert text.startswith("head only: the trial's best epoch came in phase 1 of 2")
    assert frozen == 1.0 and "searched as: linear probe 5 epochs" in text
    whole = retrain.replay_schedule(plan, [5, 5], 8)
    assert retrain.what_ran(row, whole, plan, info) == (plan.description, 0.5)


@pytest.mark.slow
def test_the_scratch_baseline_can_be_turned_off(after_sweep):
    params = tiny(top_k=1, seeds=2, scratch=False)
    runs = retrain.run_final("small_cnn", params, after_sweep, FINAL_DIR / "small_cnn")
    assert set(runs.kind) == {"transfer"} and len(runs) >= 2
    # the freeze-depth curve takes report.curve_seeds (default 1), not report.seeds
    curve = pd.read_csv("results/final/small_cnn/depth.csv")
    assert params.report.curve_seeds == 1 and set(curve.seed) == {runs.seed.min()}


@pytest.mark.slow
def test_final_retrains_the_top_k_on_train_and_val_and_tests_once(after_sweep, monkeypatch):
    params = tiny(top_k=2, seeds=2, curve_seeds=2)
    manifest = after_sweep
    seen = []
    real = loop.run_epochs

    def spy(step, train, val, **kw):
        seen.append((len(train[1]), val is None))
        return real(step, train, val, **kw)

    monkeypatch.setattr(loop, "run_epochs", spy)
    runs = retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "small_cnn")

    trials = pd.read_csv("results/sweep/small_cnn/trials.csv")
    probed = runs.strategy == "linear_probe"
    assert probed.sum() == 2 and (runs[probed]["rank"] == 0).all()  # one row per seed
    transfer = runs[(runs.kind == "transfer") & ~probed]
    assert len(transfer) == 2 * 2 and sorted(set(transfer["rank"])) == [1, 2]
    top = trials[trials.state == "COMPLETE"].sort_values("val_accuracy", ascending=False)
    assert transfer[transfer["rank"] == 1].val_accuracy.iloc[0] == top.val_accuracy.iloc[0]
    assert transfer.test_accuracy.between(0, 1).all() and transfer.train_flops.gt(0).all()
    n_trainval = sum(len(manifest["splits"][s]) for s in ("train", "val"))
    # retraining sees train+val and never evaluates while it trains
    assert (n_trainval, True) in seen
    scratch = runs[runs.kind == ranking.SCRATCH]
    statistics = sum(
        int(np.prod(w.shape))
        for w in context.load_context("small_cnn", params, manifest).backbone.weights
        if "moving_" in w.path
    )  # nothing frozen: every weight but BatchNorm's moving statistics trains
    assert (
        len(scratch) == 2 and (scratch.total_params - scratch.trainable_params == statistics).all()
    )
    curve = pd.read_csv("results/final/small_cnn/depth.csv")
    assert {"frozen", "fine-tuned"} <= set(curve["mode"])
    assert curve.val_accuracy.between(0, 1).all() and len(curve.seed.unique()) == 2
    summary = json.loads(Path("results/final/small_cnn/summary.json").read_text())
    assert summary["versions"]["tensorflow"][0].isdigit()


@pytest.mark.slow
def test_a_retrained_configuration_is_reproducible_per_seed(after_sweep):
    params = tiny(top_k=1, seeds=2)
    manifest = after_sweep
    first = retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "a")
    second = retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "b")
    pd.testing.assert_series_equal(first.test_accuracy, second.test_accuracy)


def streamed(params, light: bool = False):
    """The same params with a memory budget too small to hold any split or activation."""
    cache = params.sweep.cache.model_copy(update={"memory_mb": 0.001})
    search = params.search.model_copy(update={"augmentation": ["light"]}) if light else None
    return params.model_copy(
        update={"sweep": params.sweep.model_copy(update={"cache": cache}),
                **({"search": search} if light else {})}
    )  # fmt: skip


@pytest.mark.slow
def test_a_run_streamed_from_disk_gives_the_numbers_of_the_run_held_in_memory(after_sweep):
    params = tiny(top_k=2, seeds=2)
    manifest = after_sweep
    held = retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "held")
    ctx = context.load_context("small_cnn", streamed(params), manifest, retrain.SPLITS)
    assert ctx.streamed and all(isinstance(x, image_store.Streamed) for x, _ in ctx.splits.values())
    on_disk = retrain.run_final("small_cnn", streamed(params), manifest, FINAL_DIR / "disk")
    for column in ("test_accuracy", "test_correct", "trainable_params"):
        pd.testing.assert_series_equal(held[column], on_disk[column])
    cache = ctx.cache
    cache.activations(len(ctx.backbone.layers), "test")
    assert cache.stats.memory_bytes == 0 and cache.stats.disk_hits + cache.stats.computed > 0


def test_augmented_views_of_a_streamed_split_are_drawn_to_disk_and_read_back(workspace):
    params = streamed(tiny(top_k=1, seeds=2), light=True)
    manifest = datasets.read_manifest(MANIFEST)
    ctx = context.load_context("small_cnn", params, manifest)
    views, labels = ctx.training("train", "light", seed=3)
    assert len(views.fixed) == params.search.augment_views
    first, second = (np.asarray(v) for v in views.fixed[:2])
    assert first.shape == (len(labels), 16, 16, 3) and not np.array_equal(first, second)
    assert len(list((ctx.cache.folder / "views").glob("*.npy"))) == len(views.fixed)
    online = views.for_epoch(0)  # fresh draws, a batch at a time
    assert online[np.arange(4)].shape == (4, 16, 16, 3)
    again = context.load_context("small_cnn", params, manifest).training("train", "light", 3)[0]
    np.testing.assert_array_equal(np.asarray(again.fixed[0]), first)  # read back, not redrawn


def separable(n: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.int32)
    images = rng.normal(0, 0.3, (n, 4, 4, 3)).astype(np.float32)
    images[:, :2] += labels[:, None, None, None] * 2.0  # the top half lights up for class 1
    return images, labels


def separable_splits() -> dict:
    """train 32, val 32, their union, test 64: the splits a baseline's protocol reads."""
    splits = {"train": separable(32, 0), "val": separable(32, 1), "test": separable(64, 2)}
    splits["trainval"] = tuple(np.concatenate(p) for p in zip(splits["train"], splits["val"]))
    return splits


def test_the_linear_baseline_learns_a_linearly_separable_task():
    splits = separable_splits()
    baseline = baselines.linear_pixels((4, 4, 3), 2)
    protocol = baselines.Protocol([1e-3, 3e-2], epochs=5, batch_size=8, patience=0, seeds=[0, 1])
    rows = baselines.select_and_test(baseline, splits, protocol)
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(r["test_accuracy"] > 0.95 for r in rows)
    assert rows[0]["trainable_params"] == 4 * 4 * 3 * 2 + 2
    assert rows[0]["learning_rate"] in (1e-3, 3e-2)


def test_a_baseline_is_validated_with_the_batchnorm_statistics_it_is_tested_with():
    splits = separable_splits()
    calibrated = []
    baseline = baselines.linear_pixels((4, 4, 3), 2)
    baseline.calibrate = lambda images: calibrated.append(len(images))
    protocol = baselines.Protocol([1e-3, 3e-2], epochs=5, batch_size=8, patience=0, seeds=[0, 1])
    baselines.select_and_test(baseline, splits, protocol)
    # before each of 2 rates x 5 validations (train inputs), then before each seed's test
    assert calibrated == [32] * 10 + [64] * 2


def test_scratch_starts_from_random_weights_and_trains_batchnorm_as_usual(workspace):
    import keras

    backbone = keras.models.load_model("models/small_cnn/backbone.keras", compile=False)
    pretrained = [np.array(w.numpy(), copy=True) for w in backbone.weights]
    baseline = baselines.scratch(backbone, 0, 0.0, 2, 0.9)
    network = baseline.step.model.features
    baseline.reinit(3)
    assert not np.array_equal(network.weights[0].numpy(), pretrained[0])
    bn = next(x for x in network.layers if isinstance(x, keras.layers.BatchNormalization))
    before = np.array(bn.moving_mean.numpy(), copy=True)
    baseline.step.reset(1e-3)
    images, labels = separable(16, 0)
    images = np.resize(images, (16, *backbone.input_shape[1:])).astype(np.float32)
    baseline.step.train_step(images, labels)
    assert not np.array_equal(bn.moving_mean.numpy(), before)  # batch statistics, as usual
    for w, value in zip(backbone.weights, pretrained):  # the transferred backbone is untouched
        np.testing.assert_array_equal(w.numpy(), value)
    with pytest.raises(AssertionError):
        np.testing.assert_array_equal(network.weights[0].numpy(), pretrained[0])


@pytest.mark.slow
def test_a_failing_retrain_is_recorded_and_the_others_go_on(after_sweep, monkeypatch):
    from pipeline.train import phases

    params = tiny(top_k=1, seeds=2)
    manifest = after_sweep
    real, calls = phases.train_plan, []

    def first_diverges(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise loop.DivergedError("loss became nan in epoch 1")
        return real(*args, **kwargs)

    monkeypatch.setattr(phases, "train_plan", first_diverges)
    runs = retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "small_cnn")
    transfer = runs[runs.kind == "transfer"]
    assert transfer.fail_reason.iloc[0] == "DivergedError: loss became nan in epoch 1"
    assert np.isnan(transfer.test_accuracy.iloc[0]) and 0 <= transfer.test_accuracy.iloc[1] <= 1
    from pipeline.report import tables

    table = tables.headline(runs)  # the failed seed is not counted
    assert table[(table.kind == "transfer") & (table["rank"] == 1)].seeds.iloc[0] == 1


@pytest.mark.slow
def test_a_diverging_depth_curve_run_is_recorded_and_the_curve_goes_on(after_sweep, monkeypatch):
    from pipeline.evaluate import depth_curve

    params = tiny(top_k=1, seeds=2)
    manifest = after_sweep

    def diverges(*args, **kwargs):
        raise loop.DivergedError("loss became nan in epoch 1")

    monkeypatch.setattr(depth_curve, "fine_tuned", diverges)
    retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "small_cnn")
    curve = pd.read_csv("results/final/small_cnn/depth.csv")
    tuned, frozen = curve[curve["mode"] == "fine-tuned"], curve[curve["mode"] == "frozen"]
    assert len(tuned) and tuned.val_accuracy.isna().all()
    assert (tuned.fail_reason == "loss became nan in epoch 1").all()
    assert len(frozen) and frozen.val_accuracy.between(0, 1).all()


def test_the_depth_curve_reuses_the_settings_of_the_strategy_it_runs():
    from pipeline.evaluate.depth_curve import FINE_TUNED, FROZEN, settings_trial

    trials = pd.DataFrame(
        [  # lp_ft scores best, but its learning rate is the probe's, not a fine-tuning one
            (0, "COMPLETE", "lp_ft", True, 0.90),
            (1, "COMPLETE", "freeze_depth", True, 0.80),
            (2, "COMPLETE", "freeze_depth", True, 0.85),
            (3, "COMPLETE", "head_only", False, 0.60),
            (4, "PRUNED", "freeze_depth", True, 0.95),
            (5, "FAIL", "head_only", False, float("nan")),
        ],
        columns=["trial", "state", "strategy", "fine_tunes", "val_accuracy"],
    )
    assert settings_trial(trials, FINE_TUNED).trial == 2
    assert settings_trial(trials, FROZEN).trial == 3
    no_depth = trials[trials.strategy != "freeze_depth"]
    assert settings_trial(no_depth, FINE_TUNED).trial == 0  # the best that fine-tunes
    assert settings_trial(no_depth[no_depth.fine_tunes], FROZEN).trial == 0  # the best of all


def test_a_frozen_probe_sees_the_pretrained_features_after_a_fine_tuning_run(workspace):
    from pipeline.evaluate import depth_curve

    params = tiny()
    ctx = context.load_context("small_cnn", params, datasets.read_manifest(MANIFEST))
    n_layers = len(ctx.backbone.layers)
    cut = max(d.n_frozen_layers for d in ctx.info.depths if d.n_frozen_layers < n_layers)
    for variable in ctx.backbone.weights:  # what an earlier fine-tuning run leaves behind
        variable.assign(variable.numpy() + 1.0)
    config = RunConfig(ctx.size, "none", 0, 0.0, 1e-3, StrategyChoice("head_only"))
    depth_curve.frozen_probe(ctx, cut, config, seed=0, heads={})
    pristine = context.load_context("small_cnn", params, datasets.read_manifest(MANIFEST)).backbone
    import keras

    prefix = keras.Model(pristine.input, pristine.layers[cut - 1].output)
    expected = prefix(ctx.splits["train"][0], training=False).numpy()
    np.testing.assert_allclose(np.asarray(ctx.cache.activations(cut, "train")), expected, atol=1e-5)


def test_each_strategys_best_is_retrained_beside_the_top_k():
    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3, 4, 5],
            "state": ["COMPLETE"] * 5 + ["PRUNED"],
            "strategy": ["lp_ft", "lp_ft", "head_only", "lp_ft", "gradual", "surgical"],
            "val_accuracy": [0.9, 0.8, 0.5, 0.85, 0.4, 0.99],
            "trainable_params": [10, 10, 1, 10, 5, 3],
        }
    )
    chosen = retrain.chosen_trials(trials, k=2).set_index("trial")
    assert list(chosen.index) == [0, 3, 2, 4]  # top 2 by val, then head_only's and gradual's best
    assert chosen["rank"].tolist() == [1, 2, 4, 5]
    assert chosen.top_k.tolist() == [True, True, False, False]
    assert chosen.strategy_best.tolist() == [True, False, True, True]  # a pruned trial never


def test_a_tie_on_val_accuracy_goes_to_the_lower_val_loss_then_fewer_parameters():
    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3],
            "state": ["COMPLETE"] * 4,
            "strategy": ["head_only"] * 4,
            "val_accuracy": [0.85, 0.85, 0.85, 0.80],
            "val_loss": [0.61, 0.42, 0.42, 0.10],
            "trainable_params": [10, 20, 15, 1],
        }
    )
    assert ranking.by_rank(trials).trial.tolist() == [2, 1, 0, 3]
    older = trials.drop(columns="val_loss")  # a study from before val_loss was recorded
    assert ranking.by_rank(older).trial.tolist() == [0, 2, 1, 3]


def test_the_sweeps_best_trial_breaks_ties_as_the_final_stage_does():
    import optuna

    from pipeline.search import budget

    study = optuna.create_study(direction="maximize")
    for loss, params in ((0.61, 10), (0.42, 20), (0.42, 15)):
        trial = optuna.trial.create_trial(
            value=0.85, user_attrs={"val_loss": loss, "trainable_params": params}
        )
        study.add_trial(trial)
    assert budget.best_trial(study.trials).number == 2


def test_traced_precise_batchnorm_matches_the_eager_recalibration():
    import keras

    from pipeline.config import BackboneParams
    from pipeline.models import backbones
    from pipeline.train.batchnorm import batchnorm_layers, recalibrate_batchnorm

    images = np.random.default_rng(0).normal(size=(300, 16, 16, 3)).astype(np.float32)
    eager = backbones.build("small_cnn", 16, None, BackboneParams(width=4))
    traced = keras.models.clone_model(eager)
    traced.set_weights(eager.get_weights())
    recalibrate_batchnorm(eager, images)  # two chunks: momentum 0, then 1/2
    calibrate = baselines.precise_batchnorm(traced, (16, 16, 3))
    calibrate(images)
    calibrate(images)  # the traced passes, reused
    for a, b in zip(batchnorm_layers(eager), batchnorm_layers(traced)):
        np.testing.assert_allclose(a.moving_mean.numpy(), b.moving_mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(a.moving_variance.numpy(), b.moving_variance.numpy(), rtol=1e-5)
        assert a.momentum == b.momentum  # restored


def test_a_surgical_search_covers_every_window_start_and_the_curve_trains_each_alone(workspace):
    from pipeline.evaluate import depth_curve

    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["sweep"].update(n_trials=1, max_trials=8)
    raw["search"].update(epochs=1, strategies=["surgical"])
    params = parse_params(raw)
    swept(params)
    trials = pd.read_csv(SWEEP_DIR / "small_cnn" / "trials.csv")
    ctx = context.load_context("small_cnn", params, datasets.read_manifest(MANIFEST))
    segments = ctx.info.segments
    starts = [json.loads(p)["surgical_start"] for p in trials.params]
    assert sorted(starts[: len(segments)]) == list(range(len(segments)))  # each start once
    assert (trials.state == "COMPLETE").sum() == len(segments) > 1  # n_trials 1: the minimum

    curve = depth_curve.trace(ctx, trials, seeds=[0])
    alone = curve[curve["mode"] == depth_curve.SURGICAL]
    cuts = [first for first, _ in segments]
    assert (
        sorted(d.n_frozen_layers for d in ctx.info.depths if d.depth in set(alone.depth)) == cuts
    )  # one run per segment, at the cut where it starts
    assert alone.val_accuracy.notna().all()
    best = trials[trials.state == "COMPLETE"].sort_values("val_accuracy").iloc[-1]
    assert (alone.settings_trial == best.trial).all()


def test_the_converged_linear_probe_is_a_candidate_chosen_and_tested_like_the_others(workspace):
    from pipeline.evaluate import probe

    params = tiny()
    manifest = datasets.read_manifest(MANIFEST)
    ctx = context.Contexts("small_cnn", params, manifest, retrain.SPLITS).first
    rows = probe.select_and_test(ctx, seeds=[3, 4])
    assert [r["seed"] for r in rows] == [3, 4]
    first, second = rows
    assert {k: v for k, v in first.items() if k != "seed"} == {
        k: v for k, v in second.items() if k != "seed"
    }  # L-BFGS from zeros: deterministic, every seed the same run
    n_val, n_test = len(ctx.splits["val"][1]), len(ctx.splits["test"][1])
    assert len(first["val_correct"]) == n_val and len(first["test_correct"]) == n_test
    assert first["val_accuracy"] == first["val_correct"].count("1") / n_val
    assert first["test_accuracy"] == first["test_correct"].count("1") / n_test
    width = probe.pooled(ctx, "train").shape[1]
    assert first["trainable_params"] == width * ctx.num_classes + ctx.num_classes
    assert any(f"C {c:g} " in first["plan"] for c in probe.C_GRID)
    assert first["strategy"] == ranking.PROBE and first["rank"] == 0 and first["epochs"] >= 1
    assert first["class_weight"] == "none" and "weighed" not in first["plan"]


def test_the_probe_searches_the_class_weighting_when_the_search_does(workspace, monkeypatch):
    from pipeline.evaluate import probe

    params = tiny()
    search = params.search.model_copy(update={"class_weight": ["none", "balanced"]})
    params = params.model_copy(update={"search": search})
    ctx = context.Contexts("small_cnn", params, datasets.read_manifest(MANIFEST), retrain.SPLITS)
    fits, real = [], probe.scores.fit_probe
    spy = lambda x, y, c=1.0, w="none": fits.append(w) or real(x, y, c, w)  # noqa: E731
    monkeypatch.setattr(probe.scores, "fit_probe", spy)
    row = probe.select_and_test(ctx.first, seeds=[0])[0]
    assert fits[: 2 * len(probe.C_GRID)].count("balanced") == len(probe.C_GRID)
    assert row["class_weight"] in ("none", "balanced") and fits[-1] == row["class_weight"]


def test_the_linear_baseline_streamed_from_disk_gives_the_numbers_held_in_memory(workspace):
    params = tiny(seeds=2)
    manifest = datasets.read_manifest(MANIFEST)
    held = baselines.run_linear_pixels(params, manifest)
    on_disk = baselines.run_linear_pixels(streamed(params), manifest)
    for column in ("test_accuracy", "test_correct", "learning_rate"):
        pd.testing.assert_series_equal(held[column], on_disk[column])


@pytest.mark.slow
def test_a_class_weight_set_in_params_trains_the_sweep_and_the_retraining(workspace, monkeypatch):
    from pipeline.train import phases

    params = tiny(top_k=1, seeds=2)
    search = params.search.model_copy(update={"class_weight": ["balanced"]})
    params = params.model_copy(update={"search": search})
    seen, real = [], phases.train_plan

    def spy(*args, class_weights=None, **kwargs):
        seen.append(class_weights)
        return real(*args, class_weights=class_weights, **kwargs)

    monkeypatch.setattr(phases, "train_plan", spy)
    manifest = swept(params)
    trials = pd.read_csv(SWEEP_DIR / "small_cnn" / "trials.csv")
    assert set(trials.class_weight) == {"balanced"}
    runs = retrain.run_final("small_cnn", params, manifest, FINAL_DIR / "small_cnn")
    transfer = runs[(runs.kind == "transfer") & (runs.strategy != "linear_probe")]
    assert set(transfer.class_weight) == {"balanced"}
    probed = runs[runs.strategy == "linear_probe"]  # the probe weighs classes as told, too
    assert set(probed.class_weight) == {"balanced"} and "weighed balanced" in probed.plan.iloc[0]
    classes = len(manifest["target_classes"])
    assert seen and all(w is not None and len(w) == classes for w in seen)
