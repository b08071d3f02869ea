"""The backbone registry, source pretraining with converged BatchNorm, model files and
weights-only files."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest

from pipeline.config import BackboneParams, PretrainParams
from pipeline.data import datasets
from pipeline.errors import ThawError
from pipeline.models import backbones, freezing, weights_file
from pipeline.train import batchnorm, pretrain

# (architecture, feature channels at 32 px), as keras.applications' own tests walk a table.
MODEL_LIST = [
    ("small_cnn", 64),
    ("mobilenet", 358),  # 1024 x alpha 0.35
    ("mobilenet_v2", 1280),
    ("efficientnet_b0", 1280),
    ("resnet50", 2048),
]


@pytest.mark.parametrize("arch, channels", MODEL_LIST)
def test_every_registered_backbone_builds_headless_at_32px(arch, channels):
    model = backbones.build(arch, 32, None, BackboneParams(alpha=0.35, width=16))
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape[-1] == channels and len(model.output_shape) == 4
    assert len(freezing.cut_points(model)) >= 3


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ThawError, match="mobilenet_v2"):
        backbones.build("vgg99", 32, None, BackboneParams())


def test_imagenet_download_failure_names_the_file_to_point_to(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://example/weights.h5: Temporary failure")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(ThawError) as info:
        backbones.build("mobilenet_v2", 32, "imagenet", BackboneParams())
    message = str(info.value)
    assert "mobilenet_v2" in message and "`weights:` to its path" in message
    assert "/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in message


def published_weights(path, alpha: float = 0.25):
    """A random MobileNet's weights-only file: in the layout keras.applications publish
    (`.h5`: a layer list, no model config), or Keras 3's own (`.weights.h5`)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(1)
    model = keras.applications.MobileNet(
        input_shape=(32, 32, 3), include_top=False, weights=None, alpha=alpha
    )
    if path.name.endswith(".weights.h5"):
        model.save_weights(path)
    else:
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model


@pytest.mark.parametrize("name", ["mobilenet_2_5_224_tf_no_top.h5", "mine.weights.h5"])
def test_a_weights_only_file_loads_into_its_architecture(workspace, monkeypatch, name):
    path = workspace / name
    saved = published_weights(path)
    monkeypatch.setattr(pretrain, "linear_probe_accuracy", lambda *args: 0.9)  # random features
    manifest = {**datasets.read_manifest("data/manifest.json"), "image_size": 64}
    spec = BackboneParams(arch="mobilenet", weights=str(path), alpha=0.25)
    assert weights_file.weights_path(spec) == str(path) and weights_file.model_path(spec) is None
    model, meta = pretrain.make_backbone("mine", spec, manifest, PretrainParams(), seed=0)
    assert model.input_shape == (None, 64, 64, 3)  # weights do not depend on the image size
    loaded, expected = model.get_weights(), saved.get_weights()
    assert len(loaded) == len(expected) == 135  # 27 convolutions, 27 BatchNorms x 4
    assert all(np.array_equal(a, b) for a, b in zip(loaded, expected))
    assert (meta["arch"], meta["preprocess"], meta["weights"]) == (
        "mobilenet",
        "symmetric",
        str(path),
    )


def test_a_weights_file_of_another_width_fails_to_load_with_the_file_named(workspace):
    path = workspace / "wide.h5"
    published_weights(path, alpha=0.5)
    with pytest.raises(ThawError, match=r"wide.h5 does not fit mobilenet \(alpha 0.25\) at 32 px"):
        backbones.build("mobilenet", 32, str(path), BackboneParams(alpha=0.25))


def conv_bn_model(momentum: float):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=momentum, name="bn")(x)
    return keras.Model(inputs, keras.layers.ReLU()(x))


def test_recalibration_sets_population_statistics_and_keeps_momentum():
    model = conv_bn_model(momentum=0.999)
    images = np.random.default_rng(0).normal(3.0, 2.0, size=(96, 8, 8, 3)).astype("float32")
    batchnorm.recalibrate_batchnorm(model, images, chunk=32)
    conv_out = keras.Model(model.input, model.get_layer("conv").output).predict(images, verbose=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4
    )
    within_chunk_var = np.mean([conv_out[i : i + 32].var(axis=(0, 1, 2)) for i in (0, 32, 64)], 0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), within_chunk_var, rtol=1e-3)
    assert bn.momentum == 0.999


def test_pretrained_backbone_is_accurate_in_inference_mode(prepared_workspace):
    meta = json.loads((prepared_workspace / "models/small_cnn/meta.json").read_text())
    assert meta["source_accuracy_method"] == "pretrained"
    assert meta["source_accuracy"] > 0.8  # 5 source classes: chance is 0.2
    saved = prepared_workspace / "models/small_cnn/backbone.keras"
    loaded = keras.models.load_model(saved, compile=False)
    assert meta["sha256"] == pretrain.content_digest(loaded)  # the content, read back
    assert meta["cut_points"] and meta["total_params"] > 0


def test_the_same_backbone_saved_twice_is_the_same_bytes(tmp_path):
    """A re-run backbone stage must not make DVC, or a study keyed on the backbone, see a
    new file: the .keras zip's save date and entry times are fixed."""
    model = conv_bn_model(momentum=0.9)
    digests = []
    for name in ("a", "b"):
        pretrain.save_backbone(model, {}, tmp_path / name)
        digests.append(datasets.file_digest(tmp_path / name / "backbone.keras"))
        assert keras.models.load_model(tmp_path / name / "backbone.keras", compile=False)
        time.sleep(2.1)  # the zip's clock ticks in 2-second steps
        # as in another process: fresh names, and the dtype policy every layer shares
        # at another address
        weights = model.get_weights()
        keras.backend.clear_session()
        keras.config.set_dtype_policy("float32")
        rebuilt = conv_bn_model(momentum=0.9)
        rebuilt.set_weights(weights)
        model = rebuilt
    assert digests[0] == digests[1]


def test_shared_objects_stay_shared_under_canonical_ids():
    config = {"a": {"shared_object_id": 99}, "b": [{"shared_object_id": 7}, {"x": 1}],
              "c": {"shared_object_id": 99}}  # fmt: skip
    assert pretrain.canonical_shared_ids(config) == {
        "a": {"shared_object_id": 1}, "b": [{"shared_object_id": 2}, {"x": 1}],
        "c": {"shared_object_id": 1},
    }  # fmt: skip


def test_near_chance_source_accuracy_stops_the_stage(workspace, monkeypatch):
    monkeypatch.setattr(pretrain, "pretrain", lambda *args: 0.24)
    manifest = datasets.read_manifest("data/manifest.json")
    with pytest.raises(pretrain.PretrainingError, match="0.240 in inference mode is near chance"):
        pretrain.make_backbone(
            "small_cnn", BackboneParams(width=4), manifest, PretrainParams(epochs=1), seed=0
        )


def test_a_model_file_near_chance_gets_advice_that_applies_to_it(workspace, monkeypatch):
    trained = keras.models.load_model("models/small_cnn/backbone.keras")
    path = workspace / "mine.keras"
    trained.save(path)
    monkeypatch.setattr(pretrain, "linear_probe_accuracy", lambda *args: 0.2)
    manifest = datasets.read_manifest("data/manifest.json")
    with pytest.raises(pretrain.PretrainingError) as caught:
        pretrain.make_backbone(
            "mine", BackboneParams(weights=str(path)), manifest, PretrainParams(), seed=0
        )
    message = str(caught.value)
    assert "pretrain." not in message  # a file backbone is never pretrained here
    assert str(path) in message and "preprocess" in message and "'symmetric'" in message


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_file_is_a_backbone(workspace, suffix):
    trained = keras.models.load_model("models/small_cnn/backbone.keras")
    path = workspace / f"custom{suffix}"
    trained.save(path)
    manifest = datasets.read_manifest("data/manifest.json")
    model, meta = pretrain.make_backbone(
        "mine", BackboneParams(weights=str(path)), manifest, PretrainParams(), seed=0
    )
    assert meta["source_accuracy_method"] == "linear_probe" and meta["source_accuracy"] > 0.6
    assert meta["arch"] == path.name
    assert [c["layer"] for c in meta["cut_points"]] == [
        c.layer for c in freezing.cut_points(trained)
    ]


def test_a_model_file_with_the_wrong_input_size_is_rejected(workspace):
    path = workspace / "big.keras"
    backbones.build("small_cnn", 24, None, BackboneParams(width=4)).save(path)
    with pytest.raises(ThawError, match="takes 24x24 images but data.image_size is 16"):
        pretrain.load_model_file(str(path), 16)
