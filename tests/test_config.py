"""params.yaml validation: each kind of bad input names the key, the value and what is accepted."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.config import SearchParams, load_params, parse_params
from pipeline.errors import ParamsError
from tests.conftest import ROOT, TINY_PARAMS


def params_with(**changes) -> dict:
    """TINY_PARAMS with dotted keys replaced, e.g. params_with(**{"data.dataset": "x"})."""
    raw = copy.deepcopy(TINY_PARAMS)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return raw


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
        assert spec.weights_file and (ROOT / spec.weights_file).is_file()
        assert not spec.weights_file.startswith("..")
        assert (ROOT / spec.weights_file).stat().st_size < 4 * 2**20  # git ships none larger


def test_the_digits_example_params_file_is_valid(monkeypatch):
    monkeypatch.chdir(ROOT)
    params = load_params("examples/digits/params.yaml")
    assert {"small_cnn", "mobilenet_v2"} <= set(params.backbones)
    assert params.data.dataset == "digits"


@pytest.mark.parametrize("path", ["params.yaml", "examples/digits/params.yaml"])
def test_every_shipped_key_has_a_comment(path):
    lines = (ROOT / path).read_text().splitlines()
    keyed = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#") and ":" in ln]
    bare = [ln for ln in keyed if "#" not in ln and not ln.rstrip().endswith(":")]
    # Keys without their own comment are only those explained by the line above.
    assert len(bare) <= 4, bare


def test_unknown_key():
    message = error_for(**{"search.epochz": 3})
    assert "search.epochz" in message and "unknown key" in message and "3" in message


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


def test_unknown_weights_value():
    message = error_for(**{"backbones.small_cnn.weights": "imagenet21k"})
    assert "backbones.small_cnn.weights" in message and "'imagenet21k'" in message
    assert "source" in message and "imagenet" in message and ".keras" in message


def test_missing_model_file():
    message = error_for(**{"backbones.small_cnn.weights": "nowhere/model.keras"})
    assert "backbones.small_cnn.weights" in message and "does not exist" in message


@pytest.mark.parametrize("key", ["search.learning_rate", "search.freeze_depth"])
def test_range_with_low_above_high(key):
    message = error_for(**{key: {"low": 0.5, "high": 0.1}})
    assert key in message and "0.5" in message and "low" in message and "<= high" in message


def test_image_size_below_a_backbones_minimum():
    raw = params_with(**{"backbones.mobilenet_v2": {"weights": "source"}})
    raw["data"]["image_size"] = 16
    with pytest.raises(ParamsError) as info:
        parse_params(raw)
    message = str(info.value)
    assert "data.image_size" in message and "16" in message and "at least 32" in message


def test_overlapping_classes():
    message = error_for(**{"data.target_classes": [4, 5]})
    assert "data" in message and "[4]" in message and "disjoint" in message


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
    from pipeline.config import load_params
    from pipeline.errors import ParamsError
    from tests.conftest import TINY_PARAMS, write_params

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
    from tests.conftest import write_params

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
    cached = tmp_path / "keras" / "models" / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # Keras's cache holds the download: nothing to fetch
    load_params(tmp_path / "params.yaml")
    cached.unlink()
    monkeypatch.setattr(datasets, "network_available", lambda: True)
    load_params(tmp_path / "params.yaml")


def test_missing_section():
    raw = params_with()
    del raw["report"]
    with pytest.raises(ParamsError, match="report: required key is missing"):
        parse_params(raw)


def test_all_problems_are_reported_at_once():
    message = error_for(**{"search.epochs": 0, "sweep.n_trials": -1})
    assert "search.epochs" in message and "sweep.n_trials" in message


def test_cli_check_exits_non_zero_with_the_message(tmp_path, capsys):
    from pipeline import cli

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(**{"data.dataset": "nope"})))
    assert cli.main(["--params", str(path), "check"]) == 2
    assert "data.dataset" in capsys.readouterr().err


def test_by_name_strategy_needs_names():
    message = error_for(**{"search.strategies": ["by_name"]})
    assert "search.by_name" in message and "backbones.small_cnn.by_name" in message
    raw = params_with(
        **{"search.strategies": ["by_name"], "backbones.small_cnn.by_name": ["block1_*"]}
    )
    assert parse_params(raw).backbones["small_cnn"].by_name == ["block1_*"]


def test_by_name_patterns_are_checked_against_a_built_in_architecture():
    message = error_for(
        **{"search.strategies": ["by_name"], "backbones.small_cnn.by_name": ["block7_*"]}
    )
    assert "backbones.small_cnn.by_name" in message and "'block7_*' matches no layer" in message


def test_unknown_pruner():
    with pytest.raises(ParamsError, match=r"sweep.pruner.kind = 'asha'.*median.*hyperband"):
        parse_params(params_with(**{"sweep.pruner.kind": "asha"}))


def test_negative_cache_budget_and_patience():
    with pytest.raises(ParamsError) as error:
        parse_params(params_with(**{"sweep.cache.memory_mb": -1, "search.patience": -2}))
    assert "sweep.cache.memory_mb = -1" in str(error.value)
    assert "search.patience = -2" in str(error.value)


def test_a_longer_head_only_phase_gets_the_same_share_of_its_epochs_as_patience():
    search = SearchParams(epochs=8, head_only_epochs=30, patience=3)
    assert search.patience_for(30) == 12  # 3/8 of 30, rounded up
    assert search.patience_for(8) == search.patience_for(4) == 3  # never less than set
    assert SearchParams(epochs=8, patience=0).patience_for(30) == 0  # off stays off


def test_a_budget_too_small_for_every_strategys_minimum():
    message = error_for(**{"sweep.n_trials": 10, "sweep.min_trials_per_strategy": 4,
                           "search.strategies": ["head_only", "lp_ft", "gradual"]})  # fmt: skip
    assert "sweep.n_trials = 10" in message and "4) x 3 strategies = 12" in message


def test_a_cap_below_the_completed_trials_wanted():
    message = error_for(**{"sweep.n_trials": 10, "sweep.max_trials": 5})
    assert "sweep.max_trials = 5" in message and "at least n_trials (10)" in message
    assert parse_params(params_with(**{"sweep.n_trials": 10})).sweep.trial_cap == 30


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    from pipeline import cli

    path = tmp_path / "params.yaml"
    path.write_text("seed: [0\nsweep:\n  n_trials: 3\n")
    assert cli.main(["--params", str(path), "check"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:6: YAML syntax error: expected ',' or ']'" in err
    assert "flow sequence started at line 1, column 7" in err
    assert "Traceback" not in err and len(err.splitlines()) <= 4


def test_a_class_id_the_dataset_does_not_have_is_caught_before_any_work():
    raw = copy.deepcopy(TINY_PARAMS)
    raw["data"]["target_classes"] = [5, 6, 7, 8, 12]
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    assert "data.target_classes = [5, 6, 7, 8, 12]" in str(caught.value)
    assert "digits has classes 0-9; [12] is not one of them" in str(caught.value)


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


def test_an_unknown_class_weight_names_the_key_and_the_choices():
    message = error_for(**{"search.class_weight": ["none", "inverse"]})
    assert "search.class_weight" in message and "inverse" in message and "balanced" in message
    assert parse_params(params_with(**{"search.class_weight": ["balanced"]})).search.class_weight
