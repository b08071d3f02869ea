"""The digits TFDS builder, the catalog path under mock data, and the split manifest."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pipeline.config import DataParams
from pipeline.data import datasets, preparation

SPLIT_ARGS = dict(
    source_classes=[0, 1, 2],
    target_classes=[3, 4],
    train_per_class=3,
    val_per_class=4,
    source_val_fraction=0.25,
)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    builder = datasets.prepare_builder("digits", tmp_path_factory.mktemp("tfds"))
    return builder, *datasets.load_examples(builder, 16)


def test_digits_builds_through_tfds(digits):
    builder, images, labels = digits
    assert builder.name == "thaw_digits" and builder.is_prepared()
    assert builder.info.splits["train"].num_examples == 1797
    assert images.shape == (1797, 16, 16, 3) and images.dtype == np.uint8
    assert images.max() > 200  # grey levels rescaled to 0..255
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_matches_scikit_learn(digits):
    from sklearn.datasets import load_digits

    builder, _, _ = digits
    ds = builder.as_dataset(split="all", as_supervised=True, shuffle_files=False)
    tfds_labels = sorted(int(y) for _, y in ds.as_numpy_iterator())
    assert tfds_labels == sorted(load_digits().target.tolist())


def test_splits_are_deterministic_disjoint_and_sized(digits):
    _, _, labels = digits
    a = datasets.split_indices(labels, seed=3, **SPLIT_ARGS)
    assert a == datasets.split_indices(labels, seed=3, **SPLIT_ARGS)
    assert a != datasets.split_indices(labels, seed=4, **SPLIT_ARGS)
    all_ix = [i for ix in a.values() for i in ix]
    assert len(all_ix) == len(set(all_ix))
    assert np.bincount(labels[a["train"]], minlength=5)[3:].tolist() == [3, 3]
    assert np.bincount(labels[a["val"]], minlength=5)[3:].tolist() == [4, 4]
    assert set(labels[a["test"]]) == {3, 4} and set(labels[a["source_train"]]) == {0, 1, 2}
    assert len(a["test"]) == int(np.sum(np.isin(labels, [3, 4]))) - 14


def test_too_few_examples_is_a_clear_error(digits):
    _, _, labels = digits
    args = dict(SPLIT_ARGS, train_per_class=150, val_per_class=40)
    with pytest.raises(datasets.DatasetError, match="target class 3 has 183 examples"):
        datasets.split_indices(labels, seed=0, **args)


def test_manifest_counts_and_loading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = DataParams(image_size=16, train_per_class=2, val_per_class=3)
    manifest = preparation.prepare(params, seed=0)
    assert manifest["counts"]["train"] == {str(c): 2 for c in range(5, 10)}
    assert (
        sum(manifest["counts"]["source_train"].values())
        + sum(manifest["counts"]["source_val"].values())
        == 901
    )
    splits = datasets.load_splits(manifest, ("train", "val"))
    assert splits["train"].images.shape == (10, 16, 16, 3)
    assert sorted(set(splits["val"].labels.tolist())) == [0, 1, 2, 3, 4]  # renumbered 5-9


def test_catalog_dataset_goes_through_tfds(tmp_path, monkeypatch):
    """The real download_and_prepare / as_dataset path, with TFDS's mock data."""
    monkeypatch.setattr(datasets, "network_available", lambda: True)
    with tfds.testing.mock_data(num_examples=300):
        builder = datasets.prepare_builder("mnist", tmp_path)
        images, labels = datasets.load_examples(builder, 32)
        assert builder.name == "mnist"
        assert images.shape == (300, 32, 32, 3)  # 28x28 grey -> 32x32 RGB
        params = DataParams(
            dataset="mnist",
            source_classes=[0, 1],
            target_classes=[2, 3],
            train_per_class=2,
            val_per_class=2,
        )
        manifest = preparation.prepare(params, seed=0, data_dir=tmp_path)
    assert manifest["tfds_name"] == "mnist"
    assert len(manifest["splits"]["train"]) == 4


def test_catalog_dataset_offline_fails_at_once_with_advice(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "network_available", lambda: False)
    with pytest.raises(datasets.DatasetError) as info:
        datasets.prepare_builder("beans", tmp_path)
    message = str(info.value)
    assert "'beans'" in message and "no network" in message and "data.dataset: digits" in message


def test_class_ids_out_of_range(tmp_path, monkeypatch):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"digits has classes 0-9; \[12\]"):
        DataParams(source_classes=[0, 1], target_classes=[5, 12])  # caught with the params
    # prepare checks again, for a TFDS dataset whose metadata was not there offline
    monkeypatch.chdir(tmp_path)
    params = DataParams.model_construct(
        **{**DataParams().model_dump(), "source_classes": [0, 1], "target_classes": [5, 12]}
    )
    with pytest.raises(datasets.DatasetError, match=r"data.target_classes .* ids \[12\]"):
        preparation.prepare(params, seed=0)


SERIALIZE = """
import hashlib, numpy as np, tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer
from pipeline.data import folder_dataset
features = tfds.features.FeaturesDict({"image": tfds.features.Tensor(shape=(2,), dtype=np.int64),
    "label": tfds.features.ClassLabel(num_classes=2), "path": tfds.features.Text(),
    "zone": tfds.features.Text()})
serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
example = features.encode_example({"image": [1, 2], "label": 1, "path": "a/b.jpg", "zone": "z"})
with folder_dataset.deterministic_examples():
    print(hashlib.sha256(serializer.serialize_example(example)).hexdigest())
"""


def test_the_same_example_is_written_as_the_same_bytes_in_every_process():
    """The protobuf runtime orders an Example's feature map by a per-process seed; while
    TFDS writes, Thaw serialises deterministically (24 orders of these 4 features: three
    processes agreeing by chance is 1 in 576)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    digests = {
        subprocess.run(
            [sys.executable, "-c", SERIALIZE], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()  # fmt: skip
        for _ in range(3)
    }
    assert len(digests) == 1, digests
