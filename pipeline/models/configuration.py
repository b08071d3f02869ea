"""A typed configuration: everything one run of a backbone trains with.

The search produces it (search/space.py asks Optuna for each choice), a recorded trial
is read back into it (`from_params`, from trials.csv's `params` column, no tuner
involved), and train/runner.py runs it. Field names are the search's parameter names,
so a recorded trial and a configuration say the same thing in the same words.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from pipeline.config import SearchParams
from pipeline.data.augment import NONE


@dataclass(frozen=True)
class StrategyChoice:
    """A freezing strategy and its own choices; each is set only where the strategy has it.

    `freeze_depth` indexes the backbone's candidate depths (for `lp_ft`: those that
    fine-tune something). The rate choices apply when the strategy trains backbone layers.
    """

    strategy: str
    freeze_depth: int | None = None
    last_n: int | None = None
    unfreeze_every: int | None = None
    ft_lr_fraction: float | None = None
    surgical_start: int | None = None
    surgical_width: int | None = None
    backbone_lr_fraction: float | None = None
    discriminative: bool = False
    lr_decay: float | None = None


STRATEGY_KEYS = tuple(f.name for f in dataclasses.fields(StrategyChoice))


@dataclass(frozen=True)
class RunConfig:
    """What one run trains: its input size and augmentation, head, rate, strategy and
    class weighting."""

    image_size: int
    augmentation: str
    head_units: int
    dropout: float
    learning_rate: float
    strategy: StrategyChoice
    class_weight: str = "none"  # config.CLASS_WEIGHTS


def from_params(params: dict, size: int, search: SearchParams) -> RunConfig:
    """A recorded trial's configuration from its search parameters (trials.csv's `params`).

    What a trial did not record it did not search: a study from before sizes were
    searched ran at `size`, one from before augmentation was searched without it, and a
    class weighting is recorded only when the search has more than one.
    """
    units = int(params["head_units"])
    strategy = {k: params[k] for k in STRATEGY_KEYS if k in params}
    return RunConfig(
        image_size=int(params.get("image_size", size)),
        augmentation=params.get("augmentation", NONE),
        head_units=units,
        dropout=float(params["head_dropout"]) if units > 0 else 0.0,
        learning_rate=float(params["learning_rate"]),
        strategy=StrategyChoice(**strategy),
        class_weight=(
            params["class_weight"] if len(search.class_weight) > 1 else search.class_weight[0]
        ),
    )


def from_row(row, size: int, search: SearchParams) -> RunConfig:
    """`from_params` for a trials.csv row."""
    return from_params(json.loads(row["params"]), size, search)


def recorded_size(row) -> int | None:
    """The input size a trials.csv row ran at (None: a study from before sizes were searched)."""
    size = json.loads(row["params"]).get("image_size")
    return None if size is None else int(size)
