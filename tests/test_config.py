"""params.yaml's schema (config.py): each kind of bad input names the key, the value and what
is accepted. Checks against what the params name: tests/test_preflight.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pipeline import config
from pipeline.config import SearchParams, parse_params
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


def test_one_wording_for_a_value_outside_its_choices():
    assert config.unknown("pruner", "asha", ["median", "none"]) == (
        "unknown pruner 'asha'; accepted: ['median', 'none']"
    )
    assert config.unknown("architecture", None, "[...]") == "unknown architecture; accepted: [...]"


def test_the_accepted_choices_are_those_the_engine_keys_its_work_by():
    """config.py names the choices without importing the modules that implement them."""
    from pipeline.data import augment, datasets
    from pipeline.models import backbones, strategies

    assert config.RESIZE_RULES == datasets.RESIZE_RULES
    assert config.AUGMENTATION_LEVELS == tuple(augment.LEVELS)
    assert set(config.PREPROCESSORS) == set(backbones.PREPROCESSORS)
    assert config.STRATEGIES == tuple(strategies.STRATEGIES)
    assert config.OFFLINE_CLASSES["digits"] == tuple(str(i) for i in range(10))
    from pipeline.config import PrunerParams
    from pipeline.search.pruning import make_pruner
    from pipeline.train.loop import class_weights

    labels = np.array([0, 0, 1])
    assert [class_weights(c, labels, 2) is None for c in config.CLASS_WEIGHTS] == [True, False]
    made = [type(make_pruner(PrunerParams(kind=k), 8)).__name__ for k in config.PRUNERS]
    nop = [name == "NopPruner" for name in made]
    assert nop == [k == "none" for k in config.PRUNERS]  # every other kind is a real pruner


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


def test_unknown_weights_value():
    message = error_for(**{"backbones.small_cnn.weights": "imagenet21k"})
    assert "backbones.small_cnn.weights" in message and "'imagenet21k'" in message
    assert "source" in message and "imagenet" in message and ".keras" in message


@pytest.mark.parametrize("key", ["search.learning_rate", "search.freeze_depth"])
def test_range_with_low_above_high(key):
    message = error_for(**{key: {"low": 0.5, "high": 0.1}})
    assert key in message and "0.5" in message and "low" in message and "<= high" in message


def test_overlapping_classes():
    message = error_for(**{"data.target_classes": [4, 5]})
    assert "data" in message and "[4]" in message and "disjoint" in message


def test_missing_section():
    raw = params_with()
    del raw["report"]
    with pytest.raises(ParamsError, match="report: required key is missing"):
        parse_params(raw)


def test_all_problems_are_reported_at_once():
    message = error_for(**{"search.epochs": 0, "sweep.n_trials": -1})
    assert "search.epochs" in message and "sweep.n_trials" in message


def test_by_name_strategy_needs_names():
    message = error_for(**{"search.strategies": ["by_name"]})
    assert "search.by_name" in message and "backbones.small_cnn.by_name" in message
    raw = params_with(
        **{"search.strategies": ["by_name"], "backbones.small_cnn.by_name": ["block1_*"]}
    )
    assert parse_params(raw).backbones["small_cnn"].by_name == ["block1_*"]


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


def test_an_unknown_class_weight_names_the_key_and_the_choices():
    message = error_for(**{"search.class_weight": ["none", "inverse"]})
    assert "search.class_weight" in message and "inverse" in message and "balanced" in message
    assert parse_params(params_with(**{"search.class_weight": ["balanced"]})).search.class_weight
