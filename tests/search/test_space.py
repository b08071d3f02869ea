"""The search space gives a typed configuration, and a recorded trial reads back into the
same configuration without the tuner."""

from __future__ import annotations

import json

import optuna
import pytest

from pipeline.models import configuration, strategies
from pipeline.search import space
from tests.models.test_strategies import SEARCH, make_backbone

SPACE = SEARCH.model_copy(
    update={"augmentation": ["none", "light"], "class_weight": ["none", "balanced"],
            "head_units": [0, 16]}
)  # fmt: skip


@pytest.fixture(scope="module")
def info():
    return strategies.backbone_info(make_backbone(), SPACE)


@pytest.mark.parametrize("name", list(strategies.STRATEGIES))
def test_a_recorded_trial_reads_back_into_the_configuration_it_ran(name, info):
    search = SPACE.model_copy(update={"strategies": [name]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(12):  # random draws cover the conditional branches (rates, decay)
        trial = study.ask()
        size = space.suggest_size(trial, [32, 48])
        config = space.suggest(trial, search, info, size)
        study.tell(trial, 0.5)
        recorded = json.loads(json.dumps(trial.params))  # as trials.csv stores them
        assert configuration.from_params(recorded, 99, search) == config
        plan = strategies.plan(config.strategy, search, info, config.learning_rate)
        assert plan.strategy == name


def test_rates_are_asked_only_where_a_strategy_trains_backbone_layers(info):
    trial = optuna.trial.FixedTrial({"strategy": "head_only"})
    assert space.suggest_strategy(trial, SPACE, info) == configuration.StrategyChoice("head_only")
    everything = len(info.depths) - 1  # the deepest candidate freezes the whole backbone
    frozen = optuna.trial.FixedTrial({"strategy": "freeze_depth", "freeze_depth": everything})
    assert space.suggest_strategy(frozen, SPACE, info).backbone_lr_fraction is None
    tuned = {"strategy": "lp_ft", "freeze_depth": 0, "ft_lr_fraction": 0.5, "discriminative": True,
             "lr_decay": 2.6}  # fmt: skip
    choice = space.suggest_strategy(optuna.trial.FixedTrial(tuned), SPACE, info)
    assert choice.backbone_lr_fraction is None  # LP-FT's fine-tune rate is its own fraction
    assert choice.discriminative and choice.lr_decay == 2.6


def test_a_class_weight_that_is_not_searched_is_not_recorded(info):
    search = SPACE.model_copy(update={"class_weight": ["balanced"]})
    params = {"strategy": "head_only", "head_units": 0, "learning_rate": 0.01}
    trial = optuna.trial.FixedTrial({**params, "augmentation": "none", "image_size": 32})
    config = space.suggest(trial, search, info, 32)
    assert config.class_weight == "balanced"
    assert configuration.from_params(params, 32, search) == config
