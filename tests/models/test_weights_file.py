"""Weights-only files (Keras's ImageNet downloads): told apart from model files, and checked
against the architecture and width they are loaded into before any work starts."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from pipeline.errors import ParamsError
from pipeline.models import weights_file
from pipeline.preflight import parse_params
from tests.conftest import TINY_PARAMS
from tests.train.test_pretrain import published_weights


def params_for(**backbone):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["data"]["image_size"] = 32
    raw["backbones"] = {"net": backbone}
    return parse_params(raw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    published_weights(folder / "mobilenet_2_5_224_tf_no_top.h5", alpha=0.25)
    published_weights(folder / "quarter.weights.h5", alpha=0.25)
    keras.applications.MobileNet(input_shape=(32, 32, 3), include_top=False, weights=None,
                                 alpha=0.25).save(folder / "whole.h5")  # fmt: skip
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dense.save_weights(folder / "dense.weights.h5")
    return folder


def test_the_stem_gives_the_width_and_the_published_layout_the_architecture(files):
    legacy = weights_file.describe(files / "mobilenet_2_5_224_tf_no_top.h5")
    assert (legacy.stem_layer, legacy.stem_filters) == ("conv1", 8)  # 32 x alpha 0.25
    assert weights_file.describe(files / "quarter.weights.h5").stem_filters == 8
    assert weights_file.kind(files / "mobilenet_2_5_224_tf_no_top.h5") == weights_file.WEIGHTS
    assert weights_file.kind(files / "quarter.weights.h5") == weights_file.WEIGHTS
    assert weights_file.kind(files / "whole.h5") == weights_file.MODEL  # it has its config


@pytest.mark.parametrize("name", ["mobilenet_2_5_224_tf_no_top.h5", "quarter.weights.h5"])
def test_a_fitting_weights_file_is_accepted(files, name):
    spec = params_for(arch="mobilenet", weights=str(files / name), alpha=0.25).backbones["net"]
    assert weights_file.weights_path(spec) == str(files / name)
    assert weights_file.model_path(spec) is None


def test_a_whole_model_h5_stays_a_model_file(files):
    spec = params_for(weights=str(files / "whole.h5")).backbones["net"]
    assert weights_file.model_path(spec) == str(files / "whole.h5")
    assert weights_file.weights_path(spec) is None


@pytest.mark.parametrize("name", ["mobilenet_2_5_224_tf_no_top.h5", "quarter.weights.h5"])
def test_another_width_is_refused_with_the_one_that_fits(files, name):
    with pytest.raises(ParamsError) as info:
        params_for(arch="mobilenet", weights=str(files / name), alpha=0.5)
    message = str(info.value)
    assert "backbones.net.alpha = 0.5" in message and "has 8 filters" in message
    assert "mobilenet at alpha 0.5 has 16" in message and "the file fits alpha 0.25" in message


def test_another_architecture_is_refused_with_the_one_the_file_holds(files):
    path = str(files / "mobilenet_2_5_224_tf_no_top.h5")
    with pytest.raises(ParamsError) as info:
        params_for(arch="mobilenet_v2", weights=path, alpha=0.25)
    message = str(info.value)
    assert "backbones.net.arch = 'mobilenet_v2'" in message
    assert "holds mobilenet weights" in message and "set backbones.net.arch: mobilenet" in message


def test_a_weights_file_needs_a_published_architecture_and_an_image_stem(files):
    path = str(files / "mobilenet_2_5_224_tf_no_top.h5")
    with pytest.raises(ParamsError, match="small_cnn has none"):
        params_for(arch="small_cnn", weights=path)
    with pytest.raises(ParamsError, match="not the weights of an image backbone"):
        params_for(arch="mobilenet", weights=str(files / "dense.weights.h5"), alpha=0.25)


def test_a_compact_file_loads_within_its_rounding_and_is_smaller(files, tmp_path, monkeypatch):
    from pipeline import cli
    from pipeline.config import BackboneParams
    from pipeline.models import backbones

    source, target = files / "mobilenet_2_5_224_tf_no_top.h5", tmp_path / "compact.h5"
    monkeypatch.setattr(weights_file, "INT8_FROM", 500)  # a tiny net: some kernels in 8 bits
    assert cli.main(["compact-weights", str(source), str(target)]) == 0
    assert weights_file.is_compact(target) and not weights_file.is_compact(source)
    assert target.stat().st_size < source.stat().st_size
    assert weights_file.describe(target).stem_filters == 8  # thaw check reads it as before
    spec = params_for(arch="mobilenet", weights=str(target), alpha=0.25).backbones["net"]
    assert weights_file.weights_path(spec) == str(target)

    model = backbones.build("mobilenet", 32, str(target), BackboneParams(alpha=0.25))
    original = backbones.build("mobilenet", 32, str(source), BackboneParams(alpha=0.25))
    kinds = set()
    for got, want in zip(model.weights, original.weights):
        got, want = got.numpy(), want.numpy()
        if want.ndim < 2:  # BatchNorm and bias vectors: float32 as they were
            np.testing.assert_array_equal(got, want)
        elif want.size >= 500:  # int8: at most half a step of the channel's scale
            _, scale = weights_file.quantise(want)
            assert np.all(np.abs(got - want) <= scale / 2 + 1e-7) and not np.array_equal(got, want)
            kinds.add("int8")
        else:  # float16
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
            kinds.add("float16")
    assert kinds == {"int8", "float16"}


def test_the_depthwise_kernel_is_scaled_per_input_channel():
    kernel = np.ones((3, 3, 4, 1), np.float32) * np.array([1, 10, 100, 0], np.float32)[:, None]
    q, scale = weights_file.quantise(kernel)
    assert scale.shape == (1, 1, 4, 1) and np.all(np.abs(q[..., :3, :]) == 127)
    np.testing.assert_array_equal(q[..., 3, :], 0)  # an all-zero channel stays zero
