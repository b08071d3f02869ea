"""Weights-only files (Keras's ImageNet downloads): told apart from model files, and checked
against the architecture and width they are loaded into before any work starts."""

from __future__ import annotations

import json

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from pipeline.config import BackboneParams
from pipeline.errors import ParamsError
from pipeline.models import backbones, graph, weights_file, zoo
from pipeline.preflight import parse_params
from tests.conftest import TINY_PARAMS
from tests.models.test_zoo import ISTD, MEMBERS, images, same_weights
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


# --- the zoo: every family's weights-only files (tests/models/test_zoo.py builds them) ---------
# The URL each `weights: imagenet` asks Keras's get_file for, without a download; the files
# Keras writes for each family, in both layouts, loaded bit for bit; each refused for another
# architecture or width by its fingerprint; EfficientNet's published statistics. Slow: each
# family's smallest member is built once for the file (about N s on 2 cores).


class Requested(Exception):
    """What keras.utils.get_file was asked for, in place of a download."""

    def __init__(self, fname: str, origin: str):
        super().__init__()
        self.fname, self.origin = fname, origin


def requested(monkeypatch, arch: str, size: int, alpha: float = 1.0) -> Requested:
    """The file a `weights: imagenet` build asks Keras's get_file for (nothing downloaded)."""
    from keras.src.utils import file_utils

    def get_file(fname, origin, **kwargs):
        raise Requested(fname, origin)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    with pytest.raises(Requested) as info:
        backbones.build(arch, size, "imagenet", BackboneParams(alpha=alpha))
    keras.backend.clear_session()
    return info.value


# Families whose file name Keras's constructor computes (from a name, a width, a size),
# and NASNet, whose cache name is not its URL's; the others' URLs are module constants
CAPTURED = [(a, 32, 1.0) for a in ("resnet50", "resnet50_v2", "densenet121", "efficientnet_b0")]
CAPTURED += [(a, 32, 1.0) for a in ("efficientnet_v2_b0", "convnext_tiny", "nasnet_mobile")]
CAPTURED += [("mobilenet", 32, 1.0), ("mobilenet", 128, 0.25), ("mobilenet", 96, 0.5)]
CAPTURED += [("mobilenet_v2", 96, 0.35), ("mobilenet_v2", 160, 1.4), ("mobilenet_v2", 32, 1.0)]
CAPTURED += [("mobilenet_v3_small", 32, 0.75), ("mobilenet_v3_small", 32, 1.0)]


@pytest.mark.slow
# Keras warns that an ImageNet MobileNet below its published sizes loads the 224 px file:
# what this test checks it asks for
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square:UserWarning")
@pytest.mark.parametrize("arch, size, alpha", CAPTURED)
def test_the_url_and_cache_name_are_what_keras_requests(monkeypatch, arch, size, alpha):
    asked = requested(monkeypatch, arch, size, alpha)
    member = zoo.ZOO[arch]
    assert asked.origin == backbones.ARCHITECTURES[arch].imagenet_url(alpha, size)
    assert asked.fname == zoo.cache_name(member, alpha, size)
    assert asked.origin in backbones.offline_advice(arch, alpha, size)


def keras_model(arch: str, size: int):
    """keras.applications' own model for `arch`, random weights (what a user saves)."""
    keras.utils.set_random_seed(1)
    constructor = getattr(keras.applications, zoo.ZOO[arch].constructor)
    return constructor(input_shape=(size, size, 3), include_top=False, weights=None)


def legacy_file(model, path):
    """The layout keras.applications publish: a layer list, each layer's tensors."""
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


@pytest.mark.slow
def test_flattening_rewrites_convnext_and_leaves_a_plain_graph_as_it_is():
    """backbones.build returns Keras's own model where no join is a bare operation and no
    model is nested (every family but ConvNeXt), and rewrites ConvNeXt's (models/graph.py)."""
    plain = keras_model("mobilenet", 32)
    assert graph.flat(plain) is plain
    nested = keras_model("convnext_tiny", 32)
    assert graph.needs_flattening(nested) and not graph.needs_flattening(graph.flat(nested))
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("arch, size", MEMBERS)
def test_the_weights_files_keras_writes_load_bit_for_bit(zoo_models, arch, size, tmp_path):
    """Keras's model saved as `.weights.h5` and in the published `.h5` layout; for
    ConvNeXt, Keras's nested model and Thaw's flat one (another `.weights.h5` layout)."""
    sources = {"keras": keras_model(arch, size)} if arch == "convnext_tiny" else {}
    sources["thaw"] = zoo_models[arch]  # Keras's own model, for every other family
    x = images(size)
    for who, source in sources.items():
        source.save_weights(tmp_path / f"{who}.weights.h5")
        legacy_file(source, tmp_path / f"{who}.h5")
        for name in (f"{who}.weights.h5", f"{who}.h5"):
            if who == "thaw" and name.endswith(".h5") and arch == "convnext_tiny":
                continue  # the published layout is that of Keras's nested model
            loaded = backbones.build(arch, size, str(tmp_path / name), BackboneParams())
            assert same_weights(source, loaded), name
            if who == "keras" and name.endswith(".weights.h5"):  # nested into flat: the same
                want = source.predict(x, verbose=0)
                np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)
            found = weights_file.describe(tmp_path / name)
            assert zoo.fitting(found.fingerprint) == [(arch, 1.0)], name
    keras.backend.clear_session()


def zoo_params_for(**backbone):
    """params_for at 75 px: every family's smallest size."""
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["data"]["image_size"] = 75
    raw["backbones"] = {"net": backbone}
    return parse_params(raw)


@pytest.mark.slow
@pytest.mark.parametrize("arch, size", MEMBERS)
def test_a_weights_file_is_refused_for_another_architecture_naming_its_own(
    zoo_models, arch, size, tmp_path
):
    path = tmp_path / "w.weights.h5"
    zoo_models[arch].save_weights(path)
    assert zoo_params_for(arch=arch, weights=str(path)).backbones["net"].arch == arch
    other = "densenet121" if arch == "resnet50" else "resnet50"  # resnet and densenet: one stem
    with pytest.raises(ParamsError) as info:
        zoo_params_for(arch=other, weights=str(path))
    message = str(info.value)
    assert f"backbones.net.arch = {other!r}" in message and f"holds {arch} weights" in message
    assert f"set backbones.net.arch: {arch}" in message


@pytest.mark.slow
def test_a_mobilenet_v3_file_is_refused_at_another_width(tmp_path):
    """Its stem has 16 filters at every width: the fingerprint tells them apart."""
    path = tmp_path / "small.weights.h5"
    backbones.build("mobilenet_v3_small", 32, None, BackboneParams(alpha=0.75)).save_weights(path)
    spec = zoo_params_for(arch="mobilenet_v3_small", weights=str(path), alpha=0.75)
    assert spec.backbones["net"].alpha == 0.75
    with pytest.raises(ParamsError) as info:
        zoo_params_for(arch="mobilenet_v3_small", weights=str(path), alpha=1.0)
    message = str(info.value)
    assert "backbones.net.alpha = 1.0" in message and "the file fits alpha 0.75" in message
    with pytest.raises(ParamsError, match="holds mobilenet_v3_small weights at alpha 0.75"):
        zoo_params_for(arch="mobilenet_v3_large", weights=str(path), alpha=0.75)


@pytest.mark.slow
def test_an_efficientnet_file_with_imagenet_statistics_is_built_as_keras_builds_its_download(
    monkeypatch, tmp_path
):
    """The published EfficientNet files hold ImageNet's standard deviations as the
    Normalization's variance; Keras's weights="imagenet" adds a Rescaling for that, and so
    does Thaw for such a file. Resizing keeps the statistics (set_weights alone does not)."""
    from keras.src.utils import file_utils

    source = keras_model("efficientnet_b0", 32)
    (norm,) = [x for x in source.layers if isinstance(x, keras.layers.Normalization)]
    norm.adapt_mean.assign(np.array([0.485, 0.456, 0.406], np.float32))
    norm.adapt_variance.assign(ISTD)
    path = legacy_file(source, tmp_path / "efficientnetb0_notop.h5")
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: str(path))
    downloaded = keras.applications.EfficientNetB0(
        input_shape=(32, 32, 3), include_top=False, weights="imagenet"
    )
    monkeypatch.undo()
    ours = backbones.build("efficientnet_b0", 32, str(path), BackboneParams())
    assert [type(x).__name__ for x in ours.layers] == [type(x).__name__ for x in downloaded.layers]
    x = images(32)
    np.testing.assert_array_equal(ours.predict(x, verbose=0), downloaded.predict(x, verbose=0))
    (resized,) = [x for x in backbones.at_size(ours, 64).layers if x.name == norm.name]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(resized.variance).ravel(), ISTD)
    keras.backend.clear_session()
