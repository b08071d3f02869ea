"""Typed view of `params.yaml`, validated in full before any stage does work.

Every stage calls `load_params()` once in its `main()` and passes the typed
sections down. A bad file raises `ParamsError`, whose message names the key,
the value it got and what would be accepted.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ParamsError, ThawError
from pipeline.models import backbones

PARAMS_FILE = Path("params.yaml")
BUILT_IN_WEIGHTS = ("source", "imagenet")  # any other `weights` value is a file
RESERVED_NAME = "best"  # models/best/<name>/: the exported winners
ALPHAS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # widths Keras publishes weights for
OFFLINE_DATASETS = ("digits",)  # builders of Thaw's own, available without a network


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


def dataset_class_names(name: str, folder: str | None = None) -> list[str] | None:
    """The dataset's class names in id order, from metadata or folder names (no download,
    no image read); None if unknown offline. A folder that cannot be used raises
    folder_dataset.FolderError."""
    if name == "digits":
        return [str(i) for i in range(10)]
    if name == "folder":
        from pipeline.data import folder_dataset

        return list(folder_dataset.scan(folder).classes)
    try:
        import tensorflow_datasets as tfds

        return list(tfds.builder(name).info.features["label"].names)
    except Exception:  # metadata not available offline, or no `label` feature
        return None


def dataset_classes(name: str, folder: str | None = None) -> int | None:
    """How many classes the dataset has, from its metadata (no download); None if unknown."""
    names = dataset_class_names(name, folder)
    return None if names is None else len(names)


def out_of_range(ids: list[int], count: int | None) -> list[int]:
    """Class ids a dataset of `count` classes (None: not known yet) does not have."""
    return [c for c in ids if c < 0 or (count is not None and c >= count)]


def range_problem(dataset: str, absent: list[int], count: int | None) -> str:
    have = f"classes 0-{count - 1}" if count is not None else "class ids from 0"
    return f"{dataset} has {have}; {absent} is not one of them"


DEFAULT_CLASSES = {"source_classes": [0, 1, 2, 3, 4], "target_classes": [5, 6, 7, 8, 9]}


def _class_ids(key: str, given: list, names: list[str] | None) -> list:
    """Class names (folder names, or the dataset's label names) as ids; ids stay."""
    out = []
    for c in given:
        if isinstance(c, str) and not (names and c in names) and c.lstrip("-").isdigit():
            c = int(c)
        if isinstance(c, str):
            if names is None:
                raise ParamsProblem(
                    ("data", key), given, f"class name {c!r} given, but the dataset's class "
                    "names are not known offline; use ids"
                )  # fmt: skip
            if c not in names:
                raise ParamsProblem(
                    ("data", key), given, f"no class named {c!r}; the classes are {names}"
                )
            c = names.index(c)
        out.append(c)
    return out


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

    @model_validator(mode="before")
    @classmethod
    def _names_and_defaults(cls, raw: Any) -> Any:
        """Class names to ids; a folder's classes default to every class as a target."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        dataset = raw.get("dataset", "digits")
        folder = raw.get("folder", "images")
        if dataset == "folder" or any(
            isinstance(c, str) for k in DEFAULT_CLASSES for c in (raw.get(k) or [])
        ):
            from pipeline.data import folder_dataset

            try:
                names = dataset_class_names(dataset, folder)
            except folder_dataset.FolderError as exc:
                raise ParamsProblem(("data", "folder"), folder, str(exc)) from None
        else:
            names = None
        for key in DEFAULT_CLASSES:
            if isinstance(raw.get(key), list):
                raw[key] = _class_ids(key, raw[key], names)
        if dataset == "folder":
            source = raw.setdefault("source_classes", [])
            if raw.get("target_classes") is None:
                raw["target_classes"] = [i for i in range(len(names)) if i not in source]
        else:
            for key, default in DEFAULT_CLASSES.items():
                if raw.get(key) is None:
                    raw[key] = default
        return raw

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name in OFFLINE_DATASETS or name == "folder":
            return name
        import tensorflow_datasets as tfds  # slow import: only for catalog names

        base = name.split(":")[0].split("/")[0]
        if base not in tfds.list_builders():
            raise ValueError(
                f"unknown dataset {name!r}; accepted: 'digits' (offline), 'folder' (your "
                "images in data.folder) or a TFDS catalog name such as 'tf_flowers', 'cifar10'"
            )
        return name

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
        from pipeline.data.datasets import RESIZE_RULES

        if rule not in RESIZE_RULES:
            raise ValueError(f"unknown resize rule {rule!r}; accepted: {list(RESIZE_RULES)}")
        return rule

    @property
    def has_source(self) -> bool:
        return bool(self.source_classes)

    @model_validator(mode="after")
    def _classes(self) -> DataParams:
        for key in ("source_classes", "target_classes"):
            labels = getattr(self, key)
            if key == "source_classes" and not labels:
                continue  # no source task: backbones bring their own weights
            if len(labels) < 2 or len(set(labels)) != len(labels):
                raise ValueError(f"{key}={labels}: needs at least two distinct class ids")
        count = dataset_classes(self.dataset, self.folder)
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
        imagenet."""
        return None if self.weights in BUILT_IN_WEIGHTS else self.weights

    @property
    def model_file(self) -> str | None:
        """The path in `weights` when it holds a whole model (.keras, or .h5 with its config)."""
        from pipeline.models import weights_file

        path = self.file
        return path if path is not None and weights_file.kind(path) == weights_file.MODEL else None

    @property
    def weights_file(self) -> str | None:
        """The path in `weights` when it holds weights only, for the built-in `arch`."""
        return self.file if self.file is not None and self.model_file is None else None

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        if value in BUILT_IN_WEIGHTS:
            return value
        if Path(value).suffix in (".keras", ".h5"):
            if not Path(value).is_file():
                raise ValueError(f"model file {value!r} does not exist")
            return value
        raise ValueError(
            f"unknown weights {value!r}; accepted: 'source', 'imagenet', a path to a "
            ".keras/.h5 model file, or to a weights-only .h5/.weights.h5 file for a built-in "
            "architecture (such as Keras's ImageNet download)"
        )

    @field_validator("preprocess")
    @classmethod
    def _preprocess(cls, value: str | None) -> str | None:
        if value is not None and value not in backbones.PREPROCESSORS:
            raise ValueError(
                f"unknown preprocess {value!r}; accepted: {sorted(backbones.PREPROCESSORS)}"
            )
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
        from pipeline.data.augment import LEVELS

        return _choices(levels, list(LEVELS), "levels")

    @field_validator("class_weight")
    @classmethod
    def _class_weight(cls, choices: list[str]) -> list[str]:
        from pipeline.train.loop import CLASS_WEIGHTS

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
        from pipeline.models.strategies import STRATEGIES

        unknown = [n for n in names if n not in STRATEGIES]
        if not names or unknown:
            raise ValueError(f"unknown strategies {unknown}; accepted: {list(STRATEGIES)}")
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


PRUNERS = ("median", "hyperband", "none")


class PrunerParams(Strict):
    kind: str = "median"
    warmup_epochs: int = Field(4, ge=0)  # median: never prune before this epoch
    startup_trials: int = Field(4, ge=0)  # median: trials run in full before any pruning

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        if kind not in PRUNERS:
            raise ValueError(f"unknown pruner {kind!r}; accepted: {list(PRUNERS)}")
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

    @field_validator("storage")
    @classmethod
    def _storage(cls, url: str) -> str:
        from pipeline.search import urls

        try:
            urls.check_url(url)  # the scheme, the driver, and no password
        except ValueError as exc:  # the value is echoed masked: it may hold a password
            raise ParamsProblem(("sweep", "storage"), urls.mask(url), str(exc)) from None
        return url


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

    def _fits_model_file(self, name: str, spec: BackboneParams) -> None:
        """Image size and by_name patterns against the file's own config."""
        from pipeline.models import model_file
        from pipeline.models.strategies import resolve_layer_patterns

        found = model_file.describe(spec.weights)
        if found is None:
            return
        shape, sizes = found.input_shape, self.data.sizes
        fixed = shape and len(shape) == 4 and any(d is not None for d in shape[1:3])
        if fixed and any(d not in (None, size) for d in shape[1:3] for size in sizes):
            raise ParamsProblem(
                ("data", "image_size"),
                self.data.image_size,
                f"backbone {name!r} ({spec.weights}) takes {shape[1]}x{shape[2]} images only; "
                "set data.image_size to match (or save the model with a (None, None, 3) input "
                "to search sizes)",
            )
        patterns = spec.by_name or self.search.by_name
        if "by_name" in self.search.strategies and patterns:
            try:
                resolve_layer_patterns(found.layers, list(patterns))
            except ThawError as exc:
                key = ("backbones", name, "by_name") if spec.by_name else ("search", "by_name")
                raise ParamsProblem(key, list(patterns), f"{spec.weights}: {exc}") from None

    def _fits_weights_file(self, name: str, spec: BackboneParams, arch: str) -> None:
        """A weights-only file against the architecture and width it is loaded into: the
        stem's layer name (in the published layout) and its number of filters."""
        from pipeline.models import weights_file

        entry, key = backbones.ARCHITECTURES[arch], ("backbones", name, "weights")
        if not entry.imagenet:
            raise ParamsProblem(key, spec.weights, f"a weights-only file needs an architecture "
                                f"Keras publishes weights for; {arch} has none")  # fmt: skip
        found = weights_file.describe(spec.weights)
        if found is None or found.stem_filters is None:
            raise ParamsProblem(
                key, spec.weights, "not the weights of an image backbone (no single "
                "convolution over 3 input channels in the file)",
            )  # fmt: skip
        named = [a for a, e in backbones.ARCHITECTURES.items() if e.stem and e.stem in found.layers]
        if named and arch not in named:
            raise ParamsProblem(
                ("backbones", name, "arch"), arch, f"{spec.weights} holds {named[0]} weights "
                f"(it has layer {backbones.ARCHITECTURES[named[0]].stem!r}); set "
                f"backbones.{name}.arch: {named[0]}",
            )  # fmt: skip
        expected = entry.stem_filters(spec.alpha)
        if found.stem_filters != expected:
            fits = [a for a in ALPHAS if entry.stem_filters(a) == found.stem_filters]
            raise ParamsProblem(
                ("backbones", name, "alpha"),
                spec.alpha,
                f"{spec.weights} has "
                f"{found.stem_filters} filters in its first convolution, {arch} at alpha "
                f"{spec.alpha} has {expected}"
                + (f"; the file fits alpha {fits[0]}" if fits else ""),
            )

    def _by_name_fits_architecture(self, name: str, spec: BackboneParams, arch: str) -> None:
        """by_name patterns against the built architecture's layer names (random weights:
        nothing is downloaded). Only when by_name is searched: it imports TensorFlow."""
        from pipeline.models.strategies import resolve_layer_patterns

        if arch not in backbones.ARCHITECTURES:
            return
        if backbones.min_image_size(arch) > self.data.sizes[0]:
            return  # reported below, by the image-size check
        import keras

        model = backbones.build(arch, self.data.sizes[0], None, spec)
        layers = tuple(layer.name for layer in model.layers)
        keras.backend.clear_session()
        patterns = spec.by_name or self.search.by_name
        try:
            resolve_layer_patterns(layers, list(patterns))
        except ThawError as exc:
            key = ("backbones", name, "by_name") if spec.by_name else ("search", "by_name")
            raise ParamsProblem(key, list(patterns), f"{arch}: {exc}") from None

    @model_validator(mode="after")
    def _backbones_fit_data(self) -> Params:
        if not self.backbones:
            raise ValueError("backbones: list at least one backbone")
        for name, spec in self.backbones.items():
            if name == RESERVED_NAME:
                raise ParamsProblem(
                    ("backbones", name), name, f"{RESERVED_NAME!r} is reserved: models/"
                    f"{RESERVED_NAME}/ holds the exported winners; name the backbone otherwise"
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
            arch = spec.arch or name
            if spec.model_file is None and arch not in backbones.ARCHITECTURES:
                raise ParamsProblem(
                    ("backbones", name, "arch"),
                    arch,
                    f"unknown architecture; accepted: {sorted(backbones.ARCHITECTURES)} "
                    "(or weights: a .keras/.h5 file)",
                )
            if spec.weights == "imagenet" and not backbones.ARCHITECTURES[arch].imagenet:
                raise ParamsProblem(
                    ("backbones", name, "weights"), spec.weights, f"{arch} has no published "
                    "ImageNet weights; use weights: source, or a .keras/.h5 model file"
                )  # fmt: skip
            if spec.model_file is not None:
                self._fits_model_file(name, spec)
            elif spec.weights_file is not None:
                self._fits_weights_file(name, spec, arch)
            if spec.model_file is None and "by_name" in self.search.strategies:
                self._by_name_fits_architecture(name, spec, arch)
            min_size = backbones.min_image_size(arch) if arch in backbones.ARCHITECTURES else 1
            if self.data.sizes[0] < min_size:
                raise ParamsProblem(
                    ("data", "image_size"),
                    self.data.image_size,
                    f"backbone {name!r} ({arch}) needs images of at least {min_size} px",
                )
        return self


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


def parse_params(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError(f"params.yaml must be a mapping of keys to values, got {_short(raw)}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors(include_url=False)]
        raise ParamsError("Invalid params.yaml:\n  " + "\n  ".join(lines)) from None


def _read_yaml(path: Path) -> Any:
    """The file's YAML, or a ParamsError with its line, column and what the parser wanted."""
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


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found; run from the project root (where dvc.yaml is)")
    params = parse_params(_read_yaml(path))
    from pipeline.search import urls

    urls.env_url()  # THAW_STORAGE overrides sweep.storage: checked as early
    for name, spec in params.backbones.items():
        if spec.weights == "imagenet":
            _imagenet_reachable(name, spec, params.data.stored_size)
    return params


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights (keras.utils.get_file's default)."""
    import os

    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "models"


def _imagenet_reachable(name: str, spec: BackboneParams, image_size: int) -> None:
    """`weights: imagenet` without a network and without Keras's cached file fails in the
    backbone stage, after prepare: say so now, with the file to point to instead."""
    from pipeline.data import datasets

    arch = spec.arch or name
    url = backbones.ARCHITECTURES[arch].imagenet_url
    if url is None or (keras_cache() / url(spec.alpha, image_size).rsplit("/", 1)[1]).is_file():
        return
    if not datasets.network_available():
        raise ParamsError(
            f"backbones.{name}.weights = 'imagenet': this machine cannot reach "
            f"storage.googleapis.com and Keras's cache ({keras_cache()}) lacks the file. "
            + backbones.offline_advice(arch, spec.alpha, image_size)
        )


def backbone_stage_args(doc: str, argv: list[str] | None = None) -> tuple[str, Params]:
    """`python -m pipeline.<stage> <name>`: the backbone's name, checked, and the params."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("name", help="a key of `backbones` in params.yaml")
    name = parser.parse_args(argv).name
    params = load_params()
    if name not in params.backbones:
        raise ParamsError(
            f"backbone {name!r} is not in params.yaml; known: {sorted(params.backbones)}"
        )
    return name, params
