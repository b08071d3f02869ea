"""Typed view of `params.yaml`: each key, what it accepts and its default.

This describes params and nothing else: what the file's text alone tells. The checks
against what the params name (a folder's classes, a model file's layers, an architecture's
smallest input, the storage URL, the network) are pipeline/preflight.py's: its subclasses of
these models add them where the schema leaves room (`DataParams._class_count`,
`Params._backbone_fits`), and its `load_params()` is what every stage calls once in its
`main()`, and `thaw check` too; stages pass the typed sections down. A bad file raises
`ParamsError`, whose message names the key, the value it got and what would be accepted.
It imports nothing of Thaw's but its errors: every layer may read it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ParamsError

PARAMS_FILE = Path("params.yaml")
BUILT_IN_WEIGHTS = ("source", "imagenet")  # any other `weights` value is a file
FILE_SUFFIXES = (".keras", ".h5")  # a `weights` file: a whole model, or weights only
RESERVED_NAME = "recommended"  # models/recommended/: the exported recommendation
FOLDER = "folder"  # data.dataset for your own images, in data.folder
# Builders of Thaw's own, available without a network, and their class names in id order
OFFLINE_CLASSES = {"digits": tuple(str(i) for i in range(10))}
DEFAULT_CLASSES = {"source_classes": [0, 1, 2, 3, 4], "target_classes": [5, 6, 7, 8, 9]}

# Accepted choices. The engine keys what each one does by these names (tests/test_config.py
# checks that they agree): data/datasets.py, data/augment.py, models/backbones.py and
# models/strategies.py.
RESIZE_RULES = ("crop", "pad")  # data.resize
AUGMENTATION_LEVELS = ("none", "light", "strong")  # search.augmentation
PREPROCESSORS = ("raw", "unit", "symmetric", "caffe", "torch")  # backbones.*.preprocess
STRATEGIES = ("head_only", "freeze_depth", "last_n_layers", "by_name", "gradual", "lp_ft",
              "bn_bias_only", "surgical")  # search.strategies  # fmt: skip
CLASS_WEIGHTS = ("none", "balanced")  # search.class_weight: how the loss weighs each class
PRUNERS = ("median", "hyperband", "none")  # sweep.pruner.kind
SCREEN_SCORES = ("probe", "knn", "logme")  # sweep.screen.score (screen/scores.py)


def unknown(what: str, value: Any, accepted: Any) -> str:
    """The one wording of a value outside its choices: "unknown pruner 'asha'; accepted:
    [...]". `value` None: the key's own line shows it already."""
    shown = "" if value is None else f" {value!r}"
    return f"unknown {what}{shown}; accepted: {accepted}"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class LogRange(FloatRange):
    @model_validator(mode="after")
    def _positive(self) -> LogRange:
        if self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got low={self.low}")
        return self


def out_of_range(ids: list[int], count: int | None) -> list[int]:
    """Class ids a dataset of `count` classes (None: not known yet) does not have."""
    return [c for c in ids if c < 0 or (count is not None and c >= count)]


def range_problem(dataset: str, absent: list[int], count: int | None) -> str:
    have = f"classes 0-{count - 1}" if count is not None else "class ids from 0"
    return f"{dataset} has {have}; {absent} is not one of them"


class DataParams(Strict):
    dataset: str = "digits"
    folder: str = "images"  # dataset: folder reads it; a dependency of `prepare` either way
    resize: str = "crop"  # to a square before image_size: the centre square, or padded
    image_size: int | list[int] = 32  # one size, or the sizes a study searches
    source_classes: list[int] = [0, 1, 2, 3, 4]  # [] = no source task
    target_classes: list[int] = [5, 6, 7, 8, 9]
    # per class: a count, a fraction of the class's images (test/ aside), or "all" that
    # the other split and one test image leave (datasets.split_counts)
    train_per_class: int | float | str = 10
    val_per_class: int | float | str = 30
    source_val_fraction: float = Field(0.2, gt=0.0, lt=1.0)

    @field_validator("train_per_class", "val_per_class")
    @classmethod
    def _per_class(cls, value: int | float | str) -> int | float | str:
        fits = (
            value == "all"
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
            or (isinstance(value, float) and 0.0 < value < 1.0)
        )
        if not fits:
            raise ValueError(
                "a count of images per class (1 or more), a fraction of each class's images "
                "(above 0, below 1; e.g. 0.1), or all"
            )
        return value

    @model_validator(mode="after")
    def _one_all(self) -> DataParams:
        if self.train_per_class == "all" and self.val_per_class == "all":
            raise ParamsProblem(
                ("data", "val_per_class"), "all", "train_per_class is all already: give val a "
                "count or a fraction (e.g. 0.1)",
            )  # fmt: skip
        return self

    @field_validator("image_size")
    @classmethod
    def _sizes(cls, value: int | list[int]) -> int | list[int]:
        sizes = value if isinstance(value, list) else [value]
        bad = [s for s in sizes if not 8 <= s <= 1024]
        if not sizes or bad or len(set(sizes)) != len(sizes):
            raise ValueError(
                "pixels per side: one size or a list of distinct sizes, each from 8 to 1024"
                + (f"; {bad} out of range" if bad else "")
            )
        return value

    @property
    def sizes(self) -> list[int]:
        """The input sizes searched, smallest first."""
        return sorted(self.image_size if isinstance(self.image_size, list) else [self.image_size])

    @property
    def stored_size(self) -> int:
        """The size `prepare` stores images at: the largest; smaller ones are resized from it."""
        return self.sizes[-1]

    @field_validator("resize")
    @classmethod
    def _resize(cls, rule: str) -> str:
        if rule not in RESIZE_RULES:
            raise ValueError(unknown("resize rule", rule, list(RESIZE_RULES)))
        return rule

    @property
    def has_source(self) -> bool:
        return bool(self.source_classes)

    def _class_count(self) -> int | None:
        """How many classes the dataset has, where the params alone tell: Thaw's own
        builders. None: ids are only checked to be >= 0. preflight.py asks a folder or TFDS."""
        names = OFFLINE_CLASSES.get(self.dataset)
        return None if names is None else len(names)

    @model_validator(mode="after")
    def _classes(self) -> DataParams:
        for key in ("source_classes", "target_classes"):
            labels = getattr(self, key)
            if key == "source_classes" and not labels:
                continue  # no source task: backbones bring their own weights
            if len(labels) < 2 or len(set(labels)) != len(labels):
                raise ValueError(f"{key}={labels}: needs at least two distinct class ids")
        count = self._class_count()
        for key in ("source_classes", "target_classes"):
            absent = out_of_range(getattr(self, key), count)
            if absent:
                raise ParamsProblem(
                    ("data", key), getattr(self, key), range_problem(self.dataset, absent, count)
                )
        overlap = set(self.source_classes) & set(self.target_classes)
        if overlap:
            raise ValueError(
                f"source_classes and target_classes share {sorted(overlap)}; "
                "they must be disjoint so the target task is new to the backbone"
            )
        return self


class PretrainParams(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    bn_momentum: float = Field(0.9, ge=0.0, lt=1.0)


class BackboneParams(Strict):
    arch: str | None = None  # defaults to the backbone's key in params.yaml
    weights: str = "source"
    alpha: float = Field(1.0, gt=0)
    width: int = Field(16, ge=1)
    preprocess: str | None = None  # defaults to the architecture's own
    by_name: list[str] = []  # layers the by_name strategy freezes; replaces search.by_name

    @property
    def file(self) -> str | None:
        """The path in `weights` (a model or weights-only file), or None for source and
        imagenet. Which of the two it holds, the file says (models/weights_file.py)."""
        return None if self.weights in BUILT_IN_WEIGHTS else self.weights

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        """Whether the file is there: preflight.py."""
        if value in BUILT_IN_WEIGHTS or Path(value).suffix in FILE_SUFFIXES:
            return value
        raise ValueError(
            unknown("weights", value, "'source', 'imagenet', a path to a .keras/.h5 model "
                    "file, or to a weights-only .h5/.weights.h5 file for a built-in "
                    "architecture (such as Keras's ImageNet download)")
        )  # fmt: skip

    @field_validator("preprocess")
    @classmethod
    def _preprocess(cls, value: str | None) -> str | None:
        if value is not None and value not in PREPROCESSORS:
            raise ValueError(unknown("preprocess", value, sorted(PREPROCESSORS)))
        return value


class DepthRange(FloatRange):
    candidates: int = Field(6, ge=1, le=64)

    @model_validator(mode="after")
    def _fraction(self) -> DepthRange:
        if not (0.0 <= self.low <= 1.0 and 0.0 <= self.high <= 1.0):
            raise ValueError(
                f"low={self.low}, high={self.high}: freeze_depth bounds are fractions of "
                "backbone parameters frozen, between 0.0 and 1.0"
            )
        return self


class IntRange(FloatRange):
    low: int = Field(ge=0)
    high: int = Field(ge=0)


class SearchParams(Strict):
    strategies: list[str] = ["freeze_depth"]
    freeze_depth: DepthRange = DepthRange(low=0.0, high=1.0)
    head_units: list[int] = [0, 32, 128]
    head_dropout: FloatRange = FloatRange(low=0.0, high=0.5)
    learning_rate: LogRange = LogRange(low=1e-4, high=1e-2)
    epochs: int = Field(8, ge=1)
    # a trial that trains the head alone on cached features: cheap, so it may converge
    head_only_epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(32, ge=1)
    last_n_layers: IntRange = IntRange(low=1, high=10)
    by_name: list[str] = []
    unfreeze_every: IntRange = IntRange(low=1, high=4)
    lp_ft_lr_fraction: LogRange = LogRange(low=0.01, high=1.0)
    # a fine-tuned backbone's rate as a fraction of the head's; high = low = 1.0: one rate
    backbone_lr_fraction: LogRange = LogRange(low=0.01, high=1.0)
    discriminative: list[bool] = [False]
    discriminative_decay: FloatRange = FloatRange(low=2.6, high=2.6)
    patience: int = Field(0, ge=0)  # early stopping: epochs without a new best; 0 = off
    augmentation: list[str] = ["none"]  # levels searched (data/augment.py)
    augment_views: int = Field(4, ge=1, le=64)  # augmented views per image a frozen prefix sees
    class_weight: list[str] = ["none"]  # loss weight per class (train/loop.py); two: searched

    @property
    def head_epochs(self) -> int:
        """Epochs of a phase that trains only the head (`epochs` unless set)."""
        return self.head_only_epochs or self.epochs

    @property
    def max_epochs(self) -> int:
        return max(self.epochs, self.head_epochs)

    def patience_for(self, epochs: int) -> int:
        """Early-stopping patience of a phase of `epochs`: `patience` is set for `epochs`
        of the search, so a longer (head-only) phase gets the same share of its budget.
        On 100 validation images accuracy moves by noise; 3 of 30 epochs stops a
        converging head at its first dip."""
        return max(self.patience, math.ceil(self.patience * epochs / self.epochs))

    @field_validator("augmentation")
    @classmethod
    def _augmentation(cls, levels: list[str]) -> list[str]:
        return _choices(levels, list(AUGMENTATION_LEVELS), "levels")

    @field_validator("class_weight")
    @classmethod
    def _class_weight(cls, choices: list[str]) -> list[str]:
        return _choices(choices, list(CLASS_WEIGHTS), "choices")

    @field_validator("head_units")
    @classmethod
    def _units(cls, units: list[int]) -> list[int]:
        if not units or any(u < 0 for u in units):
            raise ValueError(f"{units}: a non-empty list of sizes >= 0 (0 = linear head)")
        return units

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, names: list[str]) -> list[str]:
        absent = [n for n in names if n not in STRATEGIES]
        if not names or absent:
            raise ValueError(unknown("strategies", absent, list(STRATEGIES)))
        return names

    @field_validator("discriminative")
    @classmethod
    def _discriminative(cls, options: list[bool]) -> list[bool]:
        if not options:
            raise ValueError("list the options to search: [false], [true] or [false, true]")
        return options

    @model_validator(mode="after")
    def _at_least_one(self) -> SearchParams:
        if self.last_n_layers.low < 1:
            raise ParamsProblem(
                ("search", "last_n_layers", "low"),
                self.last_n_layers.low,
                "train at least one layer (low >= 1)",
            )
        if self.unfreeze_every.low < 1:
            raise ParamsProblem(
                ("search", "unfreeze_every", "low"),
                self.unfreeze_every.low,
                "unfreeze every 1 or more epochs (low >= 1)",
            )
        return self


class PrunerParams(Strict):
    kind: str = "median"
    warmup_epochs: int = Field(4, ge=0)  # median: never prune before this epoch
    startup_trials: int = Field(4, ge=0)  # median: trials run in full before any pruning

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        if kind not in PRUNERS:
            raise ValueError(unknown("pruner", kind, list(PRUNERS)))
        return kind


def _choices(given: list[str], accepted: list[str], what: str) -> list[str]:
    """A searched categorical list: non-empty, each accepted, none repeated."""
    unknown = [c for c in given if c not in accepted]
    if not given or unknown or len(set(given)) != len(given):
        raise ValueError(
            f"unknown or repeated {what} {unknown or given}; a non-empty list of: {accepted}"
        )
    return given


class CacheParams(Strict):
    memory_mb: float = Field(1024, ge=0)  # activations kept in RAM; and images, else streamed
    disk_mb: float = Field(4096, ge=0)  # spill-over under results/cache/<backbone>/
    traced_models: int = Field(8, ge=1)  # models with traced steps kept for later trials


class ScreenParams(Strict):
    """Which (backbone, input size) pairs go on to a full sweep, ranked by a score of their
    frozen features that needs no training (screen/)."""

    score: str = "probe"  # what ranks the candidates
    keep: int | Literal["all"] = "all"  # (backbone, size) pairs swept; all: every one
    neighbours: int = Field(5, ge=1)  # k of the k-NN score

    @field_validator("score")
    @classmethod
    def _score(cls, score: str) -> str:
        if score not in SCREEN_SCORES:
            raise ValueError(unknown("screen score", score, list(SCREEN_SCORES)))
        return score

    @field_validator("keep", mode="before")
    @classmethod
    def _keep(cls, keep: Any) -> Any:
        if keep == "all" or (isinstance(keep, int) and not isinstance(keep, bool) and keep >= 1):
            return keep
        raise ValueError(f"keep {keep!r}: accepted: 'all' or a whole number of at least 1")


class SweepParams(Strict):
    n_trials: int = Field(12, ge=1)  # completed trials per backbone; pruned ones come on top
    min_trials_per_strategy: int = Field(1, ge=0)  # completed trials every strategy gets
    max_trials: int | None = Field(None, ge=1)  # cap on finished trials; None: 3 x n_trials
    storage: str = "default"  # default: a SQLite file per backbone under results/optuna/
    workers: int = Field(1, ge=1)  # worker processes on this machine, the stage included
    heartbeat_seconds: int = Field(30, ge=1)  # a running trial's worker beats this often
    lost_after_seconds: int = Field(120, ge=2)  # no beat for this long: the worker is lost
    outage_seconds: float = Field(60, gt=0)  # database unreachable this long: workers exit
    max_failures: int = Field(5, ge=1)
    pruner: PrunerParams = PrunerParams()
    cache: CacheParams = CacheParams()
    screen: ScreenParams = ScreenParams()

    @property
    def trial_cap(self) -> int:
        return self.max_trials if self.max_trials is not None else 3 * self.n_trials

    @model_validator(mode="after")
    def _cap(self) -> SweepParams:
        if self.trial_cap < self.n_trials:
            raise ParamsProblem(
                ("sweep", "max_trials"),
                self.max_trials,
                f"the cap on finished trials must be at least n_trials ({self.n_trials})",
            )
        if self.lost_after_seconds <= self.heartbeat_seconds:
            raise ParamsProblem(
                ("sweep", "lost_after_seconds"),
                self.lost_after_seconds,
                f"must exceed heartbeat_seconds ({self.heartbeat_seconds}), or a live worker "
                "between two beats would count as lost",
            )
        return self


class ReportParams(Strict):
    top_n: int = Field(10, ge=1)  # rows of the all-trials table in report.md
    top_k: int = Field(3, ge=1)  # best completed trials per backbone retrained and tested
    seeds: int = Field(3, ge=2)  # seeds per retrained configuration: mean and sd need two
    curve_seeds: int = Field(1, ge=1)  # seeds per freeze-depth curve point (a description)
    scratch: bool = True  # the from-scratch baseline (a whole backbone trained per rate and seed)
    # one_se: the cheapest candidate within one standard error of the best on validation
    selection: Literal["one_se", "best"] = "one_se"


class Params(Strict):
    # Every section is required: dvc.yaml declares each one as a stage's dependency.
    seed: int
    deterministic: bool = True  # TensorFlow op determinism: same seed, same numbers
    data: DataParams
    pretrain: PretrainParams
    backbones: dict[str, BackboneParams]
    search: SearchParams
    sweep: SweepParams
    report: ReportParams

    @model_validator(mode="after")
    def _budget_covers_strategies(self) -> Params:
        sweep, strategies = self.sweep, self.search.strategies
        needed = sweep.min_trials_per_strategy * len(strategies)
        if sweep.n_trials < needed:
            raise ParamsProblem(
                ("sweep", "n_trials"),
                sweep.n_trials,
                f"fewer completed trials than min_trials_per_strategy "
                f"({sweep.min_trials_per_strategy}) x {len(strategies)} strategies = {needed}; "
                "raise n_trials or lower min_trials_per_strategy",
            )
        return self

    @model_validator(mode="after")
    def _backbones_fit_data(self) -> Params:
        if not self.backbones:
            raise ValueError("backbones: list at least one backbone")
        for name, spec in self.backbones.items():
            if name == RESERVED_NAME:
                raise ParamsProblem(
                    ("backbones", name), name, f"{RESERVED_NAME!r} is reserved: models/"
                    f"{RESERVED_NAME}/ holds the exported recommendation; name it otherwise"
                )  # fmt: skip
            if spec.weights == "source" and not self.data.has_source:
                raise ParamsProblem(
                    ("backbones", name, "weights"),
                    spec.weights,
                    "there is no source task (data.source_classes is empty) to pretrain on: "
                    "use weights: imagenet, or a .keras/.h5 model file, or give "
                    "data.source_classes",
                )
            if "by_name" in self.search.strategies and not (spec.by_name or self.search.by_name):
                raise ParamsProblem(
                    ("search", "by_name"),
                    self.search.by_name,
                    f"strategy by_name needs layer names or patterns to freeze for backbone "
                    f"{name!r}: set search.by_name or backbones.{name}.by_name",
                )
            self._backbone_fits(name, spec)
        return self

    def _backbone_fits(self, name: str, spec: BackboneParams) -> None:
        """The backbone against its architecture and file, which the params alone do not
        tell: preflight.py looks."""


class ParamsProblem(ValueError):
    """Raised inside cross-field validators to point at a key other than the model's own."""

    def __init__(self, loc: tuple[str, ...], value: Any, why: str):
        super().__init__(why)
        self.loc, self.value, self.why = loc, value, why


def _describe(error: dict[str, Any]) -> str:
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, ParamsProblem):
        key = ".".join(ctx_error.loc)
        return f"{key} = {ctx_error.value!r}: {ctx_error.why}"
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key (value {value!r}); check the spelling against README.md"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key} = {_short(value)}: {message}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def parse_params(raw: Any, schema: type[Params] = Params) -> Params:
    """`raw` as typed params, checked by `schema`: this module's, what the text alone
    tells, or preflight.py's, which also looks at what the keys name."""
    if not isinstance(raw, dict):
        raise ParamsError(f"params.yaml must be a mapping of keys to values, got {_short(raw)}")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_url=False)]
        raise ParamsError("Invalid params.yaml:\n  " + "\n  ".join(lines)) from None


def read_yaml(path: str | Path = PARAMS_FILE) -> Any:
    """The file's YAML, or a ParamsError: where to run from, or the line and column of a
    syntax error and what the parser wanted."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found; run from the project root (where dvc.yaml is)")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        found = (exc.problem or "not valid YAML").strip()
        context = ""
        if exc.context:
            start = exc.context_mark
            at = f" started at line {start.line + 1}, column {start.column + 1}" if start else ""
            context = f" ({exc.context.strip()}{at})"
        line = mark.buffer.splitlines()[mark.line] if mark and mark.buffer else ""
        pointer = f"\n    {line}\n    {' ' * mark.column}^" if line else ""
        raise ParamsError(f"{where}: YAML syntax error: {found}{context}{pointer}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
