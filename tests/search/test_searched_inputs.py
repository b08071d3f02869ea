"""Input size and augmentation as searched dimensions: a study compares them, costs grow
with the size, only training images are augmented (an exported model resizes as trained:
tests/winner/test_export.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import paths
from pipeline.data import augment, datasets, preparation
from pipeline.errors import ParamsError
from pipeline.evaluate import retrain
from pipeline.preflight import parse_params
from pipeline.search import coordinator
from pipeline.train import context
from tests.conftest import TINY_PARAMS

SIZES = [12, 16]  # the workspace's backbone is stored at 16 px


def searched(**search) -> object:
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["data"]["image_size"] = SIZES
    raw["search"].update(strategies=["head_only", "freeze_depth"], epochs=2, **search)
    raw["sweep"].update(n_trials=8, min_trials_per_strategy=2)
    return parse_params(raw)


def reprepare(params) -> dict:
    manifest = preparation.prepare(params.data, params.seed)
    datasets.write_manifest(manifest, paths.MANIFEST)
    return manifest


def test_sizes_and_levels_are_checked_up_front():
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["data"]["image_size"] = [16, 4096]
    with pytest.raises(ParamsError, match=r"data.image_size = \[16, 4096\].*\[4096\] out of range"):
        parse_params(raw)
    raw["data"]["image_size"] = 16
    raw["search"]["augmentation"] = ["none", "wild"]
    with pytest.raises(ParamsError, match=r"search.augmentation.*'none', 'light', 'strong'"):
        parse_params(raw)


def test_prepare_stores_the_largest_size_once_and_smaller_ones_are_scaled(workspace):
    manifest = reprepare(searched())
    assert (manifest["image_size"], manifest["image_sizes"]) == (16, SIZES)
    small = datasets.load_target_splits(manifest, ("train",), 12)["train"].images
    stored = datasets.load_target_splits(manifest, ("train",))["train"].images
    assert small.shape[1:] == (12, 12, 3) and stored.shape[1:] == (16, 16, 3)
    np.testing.assert_array_equal(small, datasets.to_size(stored, 12))


@pytest.mark.slow  # a sweep of 8 trials, then the whole final stage over them
def test_a_study_and_the_final_stage_search_sizes_and_augment_only_training_images(
    workspace, monkeypatch
):
    params = searched(augmentation=["none", "strong"], augment_views=2)
    manifest = reprepare(params)
    seen: list[int] = []
    draw = augment.Augmenter.__call__
    record = lambda self, x: seen.append(len(x)) or draw(self, x)  # noqa: E731
    monkeypatch.setattr(augment.Augmenter, "__call__", record)
    study, meta = coordinator.sweep("small_cnn", params, manifest)
    table = coordinator.write_results("small_cnn", study, meta, paths.SWEEP_DIR / "small_cnn")
    trials = pd.read_csv(paths.SWEEP_DIR / "small_cnn" / "trials.csv")
    assert set(trials.image_size) == set(SIZES) and set(trials.augmentation) == {"none", "strong"}
    assert table["params"]["image_size"] in SIZES
    n_train = len(manifest["splits"]["train"])
    assert seen and set(seen) == {n_train}  # never the val or test split
    seen.clear()
    report = params.report.model_copy(update={"top_k": 8, "seeds": 2, "scratch": False})
    final = params.model_copy(update={"report": report})
    runs = retrain.run_final("small_cnn", final, manifest, paths.FINAL_DIR / "small_cnn")
    n_trainval = n_train + len(manifest["splits"]["val"])
    assert "strong" in set(runs.augmentation)  # some retrained configuration augments
    assert seen and set(seen) == {n_trainval}  # retraining draws from train+val only


def test_cost_grows_with_the_input_size(workspace):
    params = searched()
    manifest = reprepare(params)
    small, large = (context.load_context("small_cnn", params, manifest, size=s) for s in SIZES)
    assert small.backbone.input_shape[1:3] == (12, 12)
    flops = [sum(c.forward for c in ctx.layer_costs) for ctx in (small, large)]
    assert flops[1] > 1.5 * flops[0]  # (16 / 12)^2 = 1.8 for convolutions
