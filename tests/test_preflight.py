"""The checks of params.yaml against what it names (preflight.py): datasets and their
classes, model and weights files, architectures, the storage URL, ImageNet's files."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from pipeline import config, preflight
from pipeline.errors import ParamsError
from pipeline.models import weights_file, zoo
from pipeline.preflight import load_params, parse_params
from tests.conftest import ROOT, TINY_PARAMS, write_params
from tests.test_config import params_with


def error_for(**changes) -> str:
    with pytest.raises(ParamsError) as info:
        parse_params(params_with(**changes))
    return str(info.value)


def test_the_shipped_params_file_is_valid(monkeypatch):
    """The default: shipped photos, two ImageNet backbones from shipped weight files, sizes
    and augmentation searched; nothing from ../shared."""
    monkeypatch.chdir(ROOT)  # its paths are relative to the project, as dvc runs it
    params = load_params("params.yaml")
    assert params.data.dataset == "folder" and params.data.folder.startswith("examples/")
    assert len(params.data.sizes) > 1 and len(params.search.augmentation) > 1
    assert len({(spec.arch, spec.alpha) for spec in params.backbones.values()}) >= 2
    for spec in params.backbones.values():
        path = weights_file.weights_path(spec)
        assert path and (ROOT / path).is_file()
        assert not path.startswith("..")
        assert (ROOT / path).stat().st_size < 4 * 2**20  # git ships none larger


def test_the_digits_example_params_file_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    params = load_params("examples/digits/params.yaml")
    assert {"small_cnn", "mobilenet_v2"} <= set(params.backbones)
    assert params.data.dataset == "digits"


def test_the_stages_get_the_schemas_own_types():
    """The checks ride on subclasses of the schema's models; what comes back is the
    schema's, equal to what the schema alone makes of the same params."""
    params = parse_params(params_with())
    assert type(params) is config.Params and type(params.data) is config.DataParams
    assert type(params.backbones["small_cnn"]) is config.BackboneParams
    assert params == config.parse_params(params_with())


def test_unknown_dataset():
    message = error_for(**{"data.dataset": "no_such_dataset"})
    assert "data.dataset" in message and "'no_such_dataset'" in message
    assert "digits" in message and "tf_flowers" in message


def test_catalog_dataset_is_accepted():
    assert parse_params(params_with(**{"data.dataset": "cifar10"})).data.dataset == "cifar10"


def test_unknown_backbone_architecture():
    message = error_for(**{"backbones": {"vgg99": {"weights": "source"}}})
    assert "backbones.vgg99.arch" in message and "'vgg99'" in message
    assert "mobilenet_v2" in message and "small_cnn" in message


def test_missing_model_file():
    message = error_for(**{"backbones.small_cnn.weights": "nowhere/model.keras"})
    assert "backbones.small_cnn.weights" in message and "does not exist" in message
    # the schema alone reads no file
    config.parse_params(params_with(**{"backbones.small_cnn.weights": "nowhere/model.keras"}))


def test_image_size_below_a_backbones_minimum():
    raw = params_with(**{"backbones.mobilenet_v2": {"weights": "source"}})
    raw["data"]["image_size"] = 16
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "data.image_size" in message and "16" in message and "at least 32" in message


def test_bad_storage_url():
    message = error_for(**{"sweep.storage": "results/optuna.db"})
    assert "sweep.storage" in message and "sqlite:///" in message


def test_an_unsupported_database_is_named_with_what_is_accepted():
    message = error_for(**{"sweep.storage": "mysql://thaw@db/thaw"})
    assert "sweep.storage" in message and "'mysql'" in message and "postgresql" in message


@pytest.mark.parametrize(
    "url", ["postgresql://thaw:hunter2@db/thaw", "postgresql://thaw@db/thaw?password=hunter2"]
)
def test_a_password_in_params_is_rejected_and_never_echoed(url):
    message = error_for(**{"sweep.storage": url})
    assert "hunter2" not in message
    for where in ("PGPASSWORD", "~/.pgpass", "PGSERVICE", "THAW_STORAGE"):
        assert where in message


def test_plain_postgresql_means_psycopg_3():
    from pipeline.search import urls

    assert urls.check_url("postgresql://thaw@db:5432/thaw") == (
        "postgresql+psycopg://thaw@db:5432/thaw"
    )
    assert urls.mask("postgresql+psycopg://thaw:pw@db/thaw") == (
        "postgresql+psycopg://thaw:***@db/thaw"
    )


def test_thaw_storage_is_checked_with_params(tmp_path, monkeypatch):
    write_params(tmp_path, TINY_PARAMS)
    monkeypatch.setenv("THAW_STORAGE", "oracle://thaw:pw@db/thaw")
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml")
    assert "THAW_STORAGE" in str(caught.value) and "pw@" not in str(caught.value)
    monkeypatch.setenv("THAW_STORAGE", "postgresql://thaw:pw@db/thaw")  # allowed there
    load_params(tmp_path / "params.yaml")


def test_imagenet_without_a_network_or_a_cached_file_is_caught_with_the_file_to_use(
    tmp_path, monkeypatch
):
    from pipeline.data import datasets

    raw = params_with(**{"data.image_size": 32})
    raw["backbones"] = {"net": {"arch": "mobilenet_v2", "weights": "imagenet", "alpha": 0.35}}
    write_params(tmp_path, raw)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "network_available", lambda: False)
    with pytest.raises(ParamsError) as caught:
        load_params(tmp_path / "params.yaml")
    message = str(caught.value)
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    assert "backbones.net.weights = 'imagenet'" in message and "cannot reach" in message
    assert f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{name}" in (
        message
    )
    assert "set `weights:` to its path" in message
    assert preflight.keras_cache() == tmp_path / "keras" / "models"
    cached = tmp_path / "keras" / "models" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # Keras's cache holds the download: nothing to fetch
    load_params(tmp_path / "params.yaml")
    cached.unlink()
    monkeypatch.setattr(datasets, "network_available", lambda: True)
    load_params(tmp_path / "params.yaml")


def test_cli_check_exits_non_zero_with_the_message(tmp_path, capsys):
    from pipeline import cli

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(**{"data.dataset": "nope"})))
    assert cli.main(["--params", str(path), "check"]) == 2
    assert "data.dataset" in capsys.readouterr().err


def test_by_name_patterns_are_checked_against_a_built_in_architecture():
    message = error_for(
        **{"search.strategies": ["by_name"], "backbones.small_cnn.by_name": ["block7_*"]}
    )
    assert "backbones.small_cnn.by_name" in message and "'block7_*' matches no layer" in message
    raw = params_with(
        **{"search.strategies": ["by_name"], "backbones.small_cnn.by_name": ["block1_*"]}
    )
    assert parse_params(raw).backbones["small_cnn"].by_name == ["block1_*"]


def test_a_model_file_that_cannot_fit_is_caught_before_any_work(prepared_workspace):
    from pipeline.models import model_file

    model = str(prepared_workspace / "models/small_cnn/backbone.keras")
    size = model_file.describe(model).input_shape[1]
    raw = copy.deepcopy(TINY_PARAMS)
    raw["backbones"] = {"mine": {"weights": model}}
    raw["data"]["image_size"] = size + 4
    with pytest.raises(ParamsError, match=rf"image_size = {size + 4}: .*takes {size}x{size}"):
        parse_params(raw)
    raw["data"]["image_size"] = size
    raw["search"]["strategies"] = ["freeze_depth", "by_name"]
    raw["backbones"]["mine"]["by_name"] = ["block1_*", "block9_conv"]
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    message = str(caught.value)
    assert "backbones.mine.by_name" in message and "'block9_conv' matches no layer" in message
    raw["backbones"]["mine"]["by_name"] = ["block1_*"]
    assert parse_params(raw).backbones["mine"].by_name == ["block1_*"]  # fits: accepted


def test_problems_of_the_schema_and_of_what_it_names_come_together_in_key_order():
    """One message for every key's problem, as when the schema looked at files itself."""
    message = error_for(**{"data.dataset": "nope", "search.epochs": 0, "sweep.storage": "x.db"})
    lines = message.splitlines()[1:]
    assert [line.split(" = ")[0].strip() for line in lines] == [
        "data.dataset",
        "search.epochs",
        "sweep.storage",
    ]


# --- the keras.applications zoo (models/zoo.py) --------------------------------------------

ZOO_SIZE = 75  # at least every architecture's smallest (InceptionV3's)


def zoo_params(*archs: str, **backbone) -> dict:
    raw = params_with(**{"data.image_size": ZOO_SIZE})
    raw["backbones"] = {arch: {"weights": "source", **backbone} for arch in archs}
    return raw


def test_thaw_check_accepts_every_architecture_of_the_zoo(tmp_path, capsys):
    from pipeline import cli

    params = parse_params(zoo_params(*zoo.ZOO))
    assert sorted(spec.arch or name for name, spec in params.backbones.items()) == sorted(zoo.ZOO)
    six = ("vgg16", "resnet50_v2", "densenet121", "convnext_tiny", "efficientnet_v2_b0", "xception")
    write_params(tmp_path, zoo_params(*six))
    assert cli.main(["--params", str(tmp_path / "params.yaml"), "check"]) == 0


@pytest.mark.parametrize(
    "arch, closest",
    [
        ("vgg99", ["vgg19", "vgg16"]),
        ("resnet05", ["resnet50"]),
        ("efficientnetb0", ["efficientnet_b0"]),
    ]
    + [("convnext-tiny", ["convnext_tiny"]), ("mobilenetv3_large", ["mobilenet_v3_large"])],
)
def test_an_unknown_architecture_is_refused_with_its_closest_names(arch, closest):
    message = error_for(**{"backbones": {"net": {"arch": arch, "weights": "source"}}})
    assert f"backbones.net.arch = {arch!r}" in message and "unknown architecture" in message
    shown = re.search(r"closest: ([^)]*)\)", message).group(1).split(", ")
    assert set(closest) <= set(shown), shown
    assert "nasnet_large" in message  # and every accepted name after them


def test_alpha_is_refused_where_the_architecture_has_no_widths():
    message = error_for(**{"backbones": {"resnet50": {"weights": "source", "alpha": 0.5}}})
    assert "backbones.resnet50.alpha = 0.5" in message and "resnet50 has no width option" in message
    assert "mobilenet_v3_small" in message  # where alpha applies


def test_imagenet_at_a_width_keras_does_not_publish_is_refused():
    raw = zoo_params("mobilenet_v3_large", alpha=0.5)
    raw["backbones"]["mobilenet_v3_large"]["weights"] = "imagenet"
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert (
        "backbones.mobilenet_v3_large.alpha = 0.5" in message and "alpha 0.75, 1.0 only" in message
    )
    parse_params(zoo_params("mobilenet_v3_large", alpha=0.5))  # random weights: any width


def test_nasnet_searches_sizes_its_graph_resizes_to():
    """NASNet pads or crops by each stage's parity: built at the largest size, it resizes to
    the others only between multiples of 32."""
    raw = zoo_params("nasnet_mobile")
    raw["data"]["image_size"] = [64, 96]
    assert parse_params(raw).data.sizes == [64, 96]
    raw["data"]["image_size"] = [48, 96]
    with pytest.raises(ParamsError, match="multiples of 32"):
        parse_params(raw)
    raw["data"]["image_size"] = 75  # one size: nothing is resized
    parse_params(raw)


def test_imagenet_offline_names_the_exact_file_of_every_architecture(tmp_path, monkeypatch):
    from pipeline.data import datasets
    from pipeline.models import backbones

    monkeypatch.setattr(datasets, "network_available", lambda: False)
    for arch in zoo.ZOO:
        raw = zoo_params(arch)
        raw["backbones"][arch]["weights"] = "imagenet"
        write_params(tmp_path, raw)
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / arch))
        with pytest.raises(ParamsError) as caught:
            load_params(tmp_path / "params.yaml")
        url = backbones.ARCHITECTURES[arch].imagenet_url(1.0, ZOO_SIZE)
        assert url in str(caught.value) and url.startswith("https://storage.googleapis.com/")
        cached = preflight.keras_cache() / zoo.cache_name(zoo.ZOO[arch], 1.0, ZOO_SIZE)
        cached.parent.mkdir(parents=True)
        cached.write_bytes(b"")  # where Keras's get_file keeps it (NASNet: not the URL's name)
        load_params(tmp_path / "params.yaml")
