"""The keras.applications zoo (models/zoo.py), row by row and family by family.

Every row names a constructor and a module Keras has, scales pixels exactly as that
module's preprocess_input, and names the file Keras downloads. One smallest member of each
family is built once (random weights, its smallest size: conftest.zoo_models) and must
find its cut points, each a single tensor that carries everything; resize; and keep what
it freezes frozen through a training step (one model of each kind). Its weights-only
files: test_weights_file.py. The largest members (ConvNeXtXLarge, EfficientNetB7,
NASNetLarge, ResNet152) are never built: their rows are checked against Keras's modules.
"""

from __future__ import annotations

import importlib
import re

import keras
import numpy as np
import pytest

from pipeline.config import BackboneParams
from pipeline.models import backbones, freezing, graph, weights_file, zoo
from pipeline.models.strategies import Phase, StrategyPlan
from pipeline.train import phases
from tests.conftest import ROOT
from tests.train.test_phases import snapshot, tiny_data

# Family -> its smallest member and the smallest input it takes (Keras's min_size)
FAMILIES = {
    "vgg": ("vgg16", 32),
    "resnet": ("resnet50", 32),
    "resnet_v2": ("resnet50_v2", 32),
    "inception_v3": ("inception_v3", 75),
    "inception_resnet_v2": ("inception_resnet_v2", 75),
    "xception": ("xception", 71),
    "densenet": ("densenet121", 32),
    "efficientnet": ("efficientnet_b0", 32),
    "efficientnet_v2": ("efficientnet_v2_b0", 32),
    "convnext": ("convnext_tiny", 32),
    "mobilenet_v3": ("mobilenet_v3_small", 32),
    "nasnet": ("nasnet_mobile", 32),
    "mobilenet": ("mobilenet", 32),
    "mobilenet_v2": ("mobilenet_v2", 32),
}
MEMBERS = list(FAMILIES.values())
NEVER_BUILT = {"convnext_xlarge", "efficientnet_b7", "nasnet_large", "resnet152"}
# Candidate freeze depths at search.freeze_depth low 0.5, high 1.0, candidates 3 (docs/zoo.md)
SEARCHED = {"inception_v3": 2, "nasnet_mobile": 1}  # every other family: 3
ISTD = np.array([0.229, 0.224, 0.225], np.float32)  # ImageNet's std: EfficientNet's variance
# One model of each kind for the freezing test: plain, residual, dense, inception, MBConv,
# ConvNeXt's LayerNorm
KINDS = ["vgg16", "resnet50", "densenet121", "inception_v3", "efficientnet_b0", "convnext_tiny"]


def size_of(arch: str) -> int:
    return dict(MEMBERS)[arch]


# The tests that build models are marked slow (the quick loop runs the table's); the whole
# file takes about N s on 2 cores, its fixture (every family built once) about 12 s.


def images(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    """uint8-valued float32 images, as the prepared data holds them."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3)).astype("float32")


def same_weights(a, b) -> bool:
    return len(a.weights) == len(b.weights) and all(
        np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights)
    )


# --- the table ------------------------------------------------------------------------------


def test_the_table_holds_every_keras_applications_constructor_once():
    constructors = {n for n in dir(keras.applications) if n[0].isupper()}
    assert sorted(m.constructor for m in zoo.ZOO.values()) == sorted(constructors)
    assert set(backbones.ARCHITECTURES) == {"small_cnn", *zoo.ZOO}
    assert {"mobilenet", "mobilenet_v2", "efficientnet_b0", "resnet50"} <= set(zoo.ZOO)
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", arch) for arch in zoo.ZOO)
    built = {zoo.ZOO[a].module for a, _ in MEMBERS}  # vgg19's module: VGG16's chain, longer
    assert {m.module for m in zoo.ZOO.values()} - built == {"vgg19"}
    assert not NEVER_BUILT & {a for a, _ in MEMBERS}


# The row-by-row tests loop over the table (with the row in each message): one test each,
# not forty, as each test's end (clear_session's garbage collection) costs half a second.


def test_a_row_names_a_constructor_its_module_and_a_scaling():
    for arch, member in zoo.ZOO.items():
        assert callable(getattr(keras.applications, member.constructor)), arch
        assert callable(getattr(keras.applications, member.module).preprocess_input), arch
        assert member.preprocess in backbones.PREPROCESSORS, arch
        assert backbones.architecture(arch).preprocess == member.preprocess, arch
        assert member.min_size >= 32 and member.widths and 1.0 in member.widths, arch


def test_no_two_architectures_or_widths_share_a_fingerprint():
    counts = [n for m in zoo.ZOO.values() for n in m.fingerprints.values()]
    assert len(counts) == len(set(counts)) == 50
    assert all(zoo.fitting(n) == [pair] for pair, n in _fingerprints().items())


def _fingerprints() -> dict[tuple[str, float], int]:
    return {(a, w): n for a, m in zoo.ZOO.items() for w, n in m.fingerprints.items()}


def test_our_scaling_is_the_family_preprocess_input_bit_for_bit():
    for arch, member in zoo.ZOO.items():
        x = images(9, seed=len(arch))
        ours = backbones.preprocess(member.preprocess, x)
        theirs = getattr(keras.applications, member.module).preprocess_input(x.copy())
        assert ours.dtype == np.float32 and np.asarray(theirs).dtype == np.float32, arch
        np.testing.assert_array_equal(ours, theirs, err_msg=arch)


def test_the_four_existing_scalings_are_unchanged():
    """The default's MobileNets scale with "symmetric": the same float32 operations as ever."""
    x = images(8)
    assert zoo.ZOO["mobilenet"].preprocess == zoo.ZOO["mobilenet_v2"].preprocess == "symmetric"
    expected = {
        "raw": x,
        "unit": x / 255.0,
        "symmetric": x / 127.5 - 1.0,
        "caffe": x[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32),
    }
    for name, want in expected.items():
        np.testing.assert_array_equal(backbones.preprocess(name, x), want, err_msg=name)


@pytest.mark.parametrize("name", sorted(backbones.PREPROCESSORS))
def test_every_scaling_has_an_exported_form_that_agrees(name):
    from pipeline.winner import export

    x = images(8)
    layer = export.scaling_layer(name)
    got = x if layer is None else keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, backbones.preprocess(name, x), rtol=1e-5, atol=1e-4)


def keras_no_top_url(arch: str) -> str:
    """The ImageNet file without top at width 1.0 and 224 px, from the constants of Keras's
    own module for the family, as its constructor joins them (no model built)."""
    member = zoo.ZOO[arch]
    module = importlib.import_module(f"keras.src.applications.{member.module}")
    name = member.constructor.lower()
    if member.module in ("resnet", "resnet_v2"):
        resnet = importlib.import_module("keras.src.applications.resnet")
        assert name in resnet.WEIGHTS_HASHES
        return f"{resnet.BASE_WEIGHTS_PATH}{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    if member.module == "efficientnet":
        assert name.removeprefix("efficientnet") in module.WEIGHTS_HASHES
        return f"{module.BASE_WEIGHTS_PATH}{name}_notop.h5"
    if member.module == "efficientnet_v2":
        variant = name.removeprefix("efficientnetv2")
        assert variant in module.WEIGHTS_HASHES or f"-{variant}" in module.WEIGHTS_HASHES
        return f"{module.BASE_WEIGHTS_PATH}efficientnetv2-{variant}_notop.h5"
    if member.module == "convnext":
        name = f"convnext_{name.removeprefix('convnext')}"
        assert name in module.WEIGHTS_HASHES
        return f"{module.BASE_WEIGHTS_PATH}{name}_notop.h5"
    if member.module == "mobilenet_v3":
        key = f"{name.removeprefix('mobilenetv3')}_224_1.0_float"
        assert key in module.WEIGHTS_HASHES
        return f"{module.BASE_WEIGHT_PATH}weights_mobilenet_v3_{key}_no_top_v2.h5"
    if member.module in ("densenet", "nasnet"):
        constant = {"nasnetmobile": "NASNET_MOBILE", "nasnetlarge": "NASNET_LARGE"}.get(name)
        return getattr(module, f"{constant or name.upper()}_WEIGHT_PATH_NO_TOP")
    if member.module == "inception_resnet_v2":
        return f"{module.BASE_WEIGHT_URL}inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"  # noqa: E501
    if member.module == "mobilenet":
        return f"{module.BASE_WEIGHT_PATH}mobilenet_1_0_224_tf_no_top.h5"
    if member.module == "mobilenet_v2":
        file = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
        return f"{module.BASE_WEIGHT_PATH}{file}"
    return module.WEIGHTS_PATH_NO_TOP  # VGG16, VGG19, InceptionV3, Xception


def test_the_url_is_the_one_keras_modules_name():
    for arch in zoo.ZOO:
        assert backbones.ARCHITECTURES[arch].imagenet_url(1.0, 224) == keras_no_top_url(arch)


# --- each family built ------------------------------------------------------------------------


@pytest.mark.slow
def test_every_family_builds_headless_with_its_fingerprint(zoo_models):
    for arch, size in MEMBERS:
        model = zoo_models[arch]
        assert model.input_shape == (None, size, size, 3) and len(model.output_shape) == 4, arch
        assert weights_file.fingerprint(model.weights) == zoo.ZOO[arch].fingerprints[1.0], arch
        assert not graph.needs_flattening(model), arch  # every block boundary is a layer
        assert len({layer.name for layer in model.layers}) == len(model.layers), arch


@pytest.mark.slow
def test_mobilenet_v3s_widths_have_their_fingerprints():
    """(MobileNet's and V2's: the shipped ImageNet files below, and benchmarks/zoo_table.py.)"""
    for alpha, count in zoo.ZOO["mobilenet_v3_small"].fingerprints.items():
        model = backbones.build("mobilenet_v3_small", 32, None, BackboneParams(alpha=alpha))
        assert weights_file.fingerprint(model.weights) == count, alpha
        keras.backend.clear_session()


@pytest.mark.parametrize(
    "path, arch, alpha",
    [("mobilenet_2_5_224_tf_no_top.h5", "mobilenet", 0.25)]
    + [("mobilenet_v2_1.0_224_no_top.compact.h5", "mobilenet_v2", 1.0)],
)
def test_the_shipped_imagenet_files_have_their_fingerprints(path, arch, alpha):
    """Keras's real downloads (the default's, one compacted), read without TensorFlow."""
    found = weights_file.describe(ROOT / "weights" / path)
    assert zoo.fitting(found.fingerprint) == [(arch, alpha)]


@pytest.mark.slow
def test_layer_names_do_not_depend_on_what_was_built_before(zoo_models):
    """Keras's counters would name Xception's joins add_12... in a process that built one
    before; each build counts from zero."""
    again = backbones.build("xception", 71, None, BackboneParams())
    assert [x.name for x in again.layers] == [x.name for x in zoo_models["xception"].layers]
    assert keras.layers.Add().name != "add"  # and names after it go on from the highest


@pytest.mark.slow
@pytest.mark.parametrize("arch, size", MEMBERS)
def test_cut_points_are_single_tensors_that_carry_everything(zoo_models, arch, size):
    """At each candidate depth, the backbone split as the activation cache splits it
    (a prefix to layers[n - 1].output, the suffix from it) computes the same features."""
    model, x = zoo_models[arch], backbones.preprocess(zoo.ZOO[arch].preprocess, images(size))
    searched = freezing.candidate_plans(model, 0.5, 1.0, 3)
    assert len(searched) == SEARCHED.get(arch, 3) and searched[-1].frozen_fraction == 1.0
    plans = freezing.candidate_plans(model, 0.0, 1.0, 4)
    assert len(plans) == (2 if arch == "nasnet_mobile" else 4)  # NASNet: none but the last
    whole = keras.ops.convert_to_numpy(model(x, training=False))
    for plan in plans[1:-1]:
        cut = model.layers[plan.n_frozen_layers - 1].output
        prefix, suffix = keras.Model(model.input, cut), keras.Model(cut, model.output)
        split = suffix(prefix(x, training=False), training=False)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(split), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cut_points_fall_on_block_boundaries(zoo_models):
    """ResNet's joins, ResNetV2's and DenseNet's pre-activation boundaries, ConvNeXt's
    joins (bare `x + y` in Keras's graph, Add layers in Thaw's), Inception's mixed blocks."""
    families = ("resnet50", "resnet50_v2", "densenet121", "convnext_tiny", "inception_v3")
    names = {
        a: [p.last_frozen_layer for p in freezing.candidate_plans(zoo_models[a], 0, 1, 64)][1:]
        for a in families
    }
    assert sum(n.endswith("_out") for n in names["resnet50"]) == 16  # every block
    assert sum(n.endswith("_out") for n in names["resnet50_v2"]) >= 12
    assert sum(n.endswith("_concat") for n in names["densenet121"]) >= 50
    assert sum(n.endswith("_add") for n in names["convnext_tiny"]) == 18  # 3 + 3 + 9 + 3 blocks
    assert {f"mixed{i}" for i in range(11)} <= set(names["inception_v3"])


@pytest.mark.slow
@pytest.mark.parametrize("arch, size", MEMBERS)
def test_a_family_resizes_with_its_weights(zoo_models, arch, size):
    # +32: NASNet's graph resizes between multiples of 32 only, and one that pads by its
    # input's parity (EfficientNet, MobileNetV2) gives a native build's features there only
    model, bigger = zoo_models[arch], size + 32
    resized = backbones.at_size(model, bigger)
    assert resized.input_shape == (None, bigger, bigger, 3) and same_weights(model, resized)


# --- freezing, as the runner applies it -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", KINDS)
def test_frozen_weights_and_statistics_stay_bit_identical_through_training(zoo_models, arch):
    """A middle cut, one epoch through phases.train_plan (the runner's path): every weight
    of the frozen prefix, BatchNorm's moving statistics and LayerNorm's included, is as it
    was; the suffix trained."""
    backbone, size = zoo_models[arch], size_of(arch)
    plan = freezing.candidate_plans(backbone, 0.0, 1.0, 4)[2]
    trainable = tuple(layer.name for layer in backbone.layers[plan.n_frozen_layers :])
    strategy = StrategyPlan(
        "freeze_depth", (Phase(1, trainable, 0.01),), plan.describe(), plan.frozen_fraction, True
    )
    model = phases.build_classifier(backbone, head_units=8, num_classes=3)
    before = snapshot(backbone)
    x, y = tiny_data(n=16, size=size)
    phases.train_plan(model, backbone, strategy, (x, y), (x[:8], y[:8]), batch_size=8, seed=0)
    frozen = [w for layer in backbone.layers[: plan.n_frozen_layers] for w in layer.weights]
    checked = {"vgg16": "kernel", "convnext_tiny": "layernorm"}.get(arch, "moving_variance")
    assert any(checked in w.path for w in frozen)  # BN's statistics, LayerNorm: checked
    for w in frozen:
        np.testing.assert_array_equal(w.numpy(), before[w.path], err_msg=w.path)
    suffix = [
        w for layer in backbone.layers[plan.n_frozen_layers :] for w in layer.trainable_weights
    ]
    assert any(not np.array_equal(w.numpy(), before[w.path]) for w in suffix)
