"""The search space: every Optuna `suggest_*` call, producing a typed `RunConfig`.

The order of the calls is part of the study: TPE's start-up draws come from one random
stream, so asking in another order would give other trials for the same seed. A
strategy's own choices are asked only when the trial chose it (Optuna's conditional
spaces), and its rate choices only when it trains some backbone layer.
"""

from __future__ import annotations

import dataclasses

from pipeline.config import SearchParams
from pipeline.models import strategies
from pipeline.models.configuration import RunConfig, StrategyChoice
from pipeline.models.strategies import BackboneInfo


def suggest_size(trial, sizes: list[int]) -> int:
    """The input size first: it picks the context (backbone and data at that size)."""
    return int(trial.suggest_categorical("image_size", list(sizes)))


def suggest(trial, search: SearchParams, info: BackboneInfo, size: int) -> RunConfig:
    """Every suggestion of a trial after its size."""
    augmentation = trial.suggest_categorical("augmentation", search.augmentation)
    head_units = trial.suggest_categorical("head_units", search.head_units)
    dropout = 0.0
    if head_units > 0:
        dropout = trial.suggest_float(
            "head_dropout", search.head_dropout.low, search.head_dropout.high
        )
    r = search.learning_rate
    learning_rate = trial.suggest_float("learning_rate", r.low, r.high, log=True)
    choice = suggest_strategy(trial, search, info)
    # suggested only when searched: a fixed choice leaves the sampler's draws as they were
    choices = search.class_weight
    weight = trial.suggest_categorical("class_weight", choices) if len(choices) > 1 else choices[0]
    return RunConfig(size, augmentation, head_units, dropout, learning_rate, choice, weight)


def suggest_strategy(trial, search: SearchParams, info: BackboneInfo) -> StrategyChoice:
    """The strategy, its structural choices, then its rate choices where it fine-tunes."""
    name = trial.suggest_categorical("strategy", search.strategies)
    choice = StrategyChoice(name, **STRUCTURE[name](trial, search, info))
    if not strategies.tuned_layers(choice, search, info):
        return choice
    if name != "lp_ft":  # LP-FT's fine-tune rate is its own fraction of the probe's
        r = search.backbone_lr_fraction
        fraction = trial.suggest_float("backbone_lr_fraction", r.low, r.high, log=True)
        choice = dataclasses.replace(choice, backbone_lr_fraction=fraction)
    if not trial.suggest_categorical("discriminative", search.discriminative):
        return choice
    r = search.discriminative_decay
    decay = trial.suggest_float("lr_decay", r.low, r.high)
    return dataclasses.replace(choice, discriminative=True, lr_decay=decay)


def _nothing(trial, search, info) -> dict:
    return {}


def _freeze_depth(trial, search, info: BackboneInfo) -> dict:
    return {"freeze_depth": trial.suggest_int("freeze_depth", 0, len(info.depths) - 1)}


def _last_n(trial, search, info: BackboneInfo) -> dict:
    return {"last_n": trial.suggest_int("last_n", *strategies.last_n_layers_range(search, info))}


def _gradual(trial, search, info) -> dict:
    r = search.unfreeze_every
    return {"unfreeze_every": trial.suggest_int("unfreeze_every", r.low, r.high)}


def _lp_ft(trial, search, info: BackboneInfo) -> dict:
    depths = strategies.lp_ft_depths(info)
    depth = trial.suggest_int("freeze_depth", 0, len(depths) - 1)
    r = search.lp_ft_lr_fraction
    return {
        "freeze_depth": depth,
        "ft_lr_fraction": trial.suggest_float("ft_lr_fraction", r.low, r.high, log=True),
    }


def _surgical(trial, search, info: BackboneInfo) -> dict:
    n = len(info.segments)  # fixed ranges for the sampler; the strategy clips the window
    return {
        "surgical_start": trial.suggest_int("surgical_start", 0, n - 1),
        "surgical_width": trial.suggest_int("surgical_width", 1, n),
    }


STRUCTURE = {  # each strategy's own choices, before its rates
    "head_only": _nothing,
    "freeze_depth": _freeze_depth,
    "last_n_layers": _last_n,
    "by_name": _nothing,
    "gradual": _gradual,
    "lp_ft": _lp_ft,
    "bn_bias_only": _nothing,
    "surgical": _surgical,
}
