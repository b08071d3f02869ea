"""params.yaml checked against what it names, before any stage does work.

config.py's schema says what the text alone tells. This module looks at what the params
point to: a dataset's classes (a folder's subfolders, TFDS's catalog and metadata), whether
a model or weights file is there and fits its backbone, an architecture's layers and
smallest input, the study's database URL, and whether ImageNet weights can be had. Every
stage calls `load_params()` once in its `main()`, and so does `thaw check`.

The checks ride on the schema's own validation (the Checked* models below add them where
the schema leaves room), so that every problem is reported with the schema's, in the same
words and order. Above data/, models/ and search/: none of them imports this module.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from pipeline import config
from pipeline.config import DEFAULT_CLASSES, FOLDER, BackboneParams, Params, ParamsProblem
from pipeline.data import datasets, folder_dataset
from pipeline.errors import ParamsError, ThawError
from pipeline.models import backbones, model_file, weights_file, zoo
from pipeline.models.strategies import resolve_layer_patterns
from pipeline.search import urls

ALPHAS = (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # widths Keras publishes weights for
ACCEPTED_DATASETS = (
    "'digits' (offline), 'folder' (your images in data.folder) or a TFDS catalog name such "
    "as 'tf_flowers', 'cifar10'"
)


def load_params(path: str | Path = config.PARAMS_FILE) -> Params:
    """The params file read, parsed and checked; and THAW_STORAGE, and ImageNet's files."""
    params = parse_params(config.read_yaml(path))
    urls.env_url()  # THAW_STORAGE overrides sweep.storage: checked as early
    for name, spec in params.backbones.items():
        if spec.weights == "imagenet":
            _imagenet_reachable(name, spec, params.data.stored_size)
    return params


def parse_params(raw: Any) -> Params:
    """params.yaml's content as typed params, checked against what it names (a
    ParamsError listing every problem). The stages get the schema's own type back."""
    checked = config.parse_params(raw, CheckedParams)
    return Params.model_validate(checked.model_dump())


class CheckedData(config.DataParams):
    """Class names as ids, from the dataset, and class ids against its classes."""

    @model_validator(mode="before")
    @classmethod
    def _names_and_defaults(cls, raw: Any) -> Any:
        return with_class_ids(raw) if isinstance(raw, dict) else raw

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        if name in config.OFFLINE_CLASSES or name == FOLDER:
            return name
        import tensorflow_datasets as tfds  # slow import: only for catalog names

        if name.split(":")[0].split("/")[0] not in tfds.list_builders():
            raise ValueError(config.unknown("dataset", name, ACCEPTED_DATASETS))
        return name

    def _class_count(self) -> int | None:
        return dataset_classes(self.dataset, self.folder)


class CheckedBackbone(BackboneParams):
    """A backbone whose file is there. (Runs after the schema's own `_weights`: the value
    is a built-in name or has a file's suffix.)"""

    @field_validator("weights")
    @classmethod
    def _file_is_there(cls, value: str) -> str:
        if value not in config.BUILT_IN_WEIGHTS and not Path(value).is_file():
            raise ValueError(f"model file {value!r} does not exist")
        return value


class CheckedSweep(config.SweepParams):
    """A storage URL Thaw can open, without a password in it (search/urls.py)."""

    @field_validator("storage")
    @classmethod
    def _storage(cls, url: str) -> str:
        try:
            urls.check_url(url)  # the scheme, the driver, and no password
        except ValueError as exc:  # the value is echoed masked: it may hold a password
            raise ParamsProblem(("sweep", "storage"), urls.mask(url), str(exc)) from None
        return url


class CheckedParams(Params):
    """The schema with the checks above in its sections, and each backbone against its
    architecture and file, after the schema's own checks of that backbone."""

    data: CheckedData
    backbones: dict[str, CheckedBackbone]
    sweep: CheckedSweep

    def _backbone_fits(self, name: str, spec: BackboneParams) -> None:
        """The backbone's architecture and file against each other and the data."""
        arch, model = spec.arch or name, weights_file.model_path(spec)
        if model is None:
            _known_architecture(name, arch)
            _width_fits(name, spec, arch)
        if spec.weights == "imagenet" and not backbones.ARCHITECTURES[arch].imagenet:
            raise ParamsProblem(
                ("backbones", name, "weights"), spec.weights, f"{arch} has no published "
                "ImageNet weights; use weights: source, or a .keras/.h5 model file"
            )  # fmt: skip
        if model is not None:
            _fits_model_file(self, name, spec)
        elif spec.file is not None:
            _fits_weights_file(name, spec, arch)
        if model is None and "by_name" in self.search.strategies:
            _by_name_fits_architecture(self, name, spec, arch)
        if arch in backbones.ARCHITECTURES:
            _sizes_fit(self.data, name, arch)


def _known_architecture(name: str, arch: str) -> None:
    """A built-in architecture, or the names closest to the one given."""
    if arch in backbones.ARCHITECTURES:
        return
    close = difflib.get_close_matches(arch, list(backbones.ARCHITECTURES), n=3, cutoff=0.6)
    what = "architecture" + (f" (closest: {', '.join(close)})" if close else "")
    accepted = f"{sorted(backbones.ARCHITECTURES)} (or weights: a .keras/.h5 file)"
    raise ParamsProblem(("backbones", name, "arch"), arch, config.unknown(what, None, accepted))


def _width_fits(name: str, spec: BackboneParams, arch: str) -> None:
    """alpha only where the architecture has widths, and a published one for ImageNet's."""
    member, key = backbones.ARCHITECTURES[arch].member, ("backbones", name, "alpha")
    if member is None:
        return
    widths = [a for a, m in zoo.ZOO.items() if m.has_width]
    if not member.has_width and spec.alpha != 1.0:
        raise ParamsProblem(key, spec.alpha, f"{arch} has no width option (alpha applies to "
                            f"{', '.join(widths)}); leave alpha at 1.0")  # fmt: skip
    if member.has_width and spec.weights == "imagenet" and spec.alpha not in member.widths:
        raise ParamsProblem(key, spec.alpha, f"Keras publishes ImageNet weights for {arch} at "
                            f"alpha {', '.join(map(str, member.widths))} only")  # fmt: skip


def _sizes_fit(data: config.DataParams, name: str, arch: str) -> None:
    """Every searched size at least the architecture's smallest, and one its graph keeps."""
    min_size, member = backbones.min_image_size(arch), backbones.ARCHITECTURES[arch].member
    if data.sizes[0] < min_size:
        raise ParamsProblem(
            ("data", "image_size"),
            data.image_size,
            f"backbone {name!r} ({arch}) needs images of at least {min_size} px",
        )
    step = member.size_step if member is not None else 1
    if len(data.sizes) > 1 and any(size % step for size in data.sizes):
        raise ParamsProblem(
            ("data", "image_size"), data.image_size, f"backbone {name!r} ({arch}) is built "
            f"at the largest size and resized to the others, which its graph allows between "
            f"multiples of {step} px only; search sizes that are multiples of {step}",
        )  # fmt: skip


def dataset_class_names(name: str, folder: str | None = None) -> list[str] | None:
    """The dataset's class names in id order, from metadata or folder names (no download,
    no image read); None if unknown offline. A folder that cannot be used raises
    folder_dataset.FolderError."""
    if name in config.OFFLINE_CLASSES:
        return list(config.OFFLINE_CLASSES[name])
    if name == FOLDER:
        return list(folder_dataset.scan(folder).classes)
    try:
        import tensorflow_datasets as tfds  # slow import: only for catalog names

        return list(tfds.builder(name).info.features["label"].names)
    except Exception:  # metadata not available offline, or no `label` feature
        return None


def dataset_classes(name: str, folder: str | None = None) -> int | None:
    """How many classes the dataset has, from its metadata (no download); None if unknown."""
    names = dataset_class_names(name, folder)
    return None if names is None else len(names)


def with_class_ids(data: dict) -> dict:
    """The data section with class names in source_classes and target_classes as ids
    (folder names, or the dataset's label names), and the classes' defaults: for a folder,
    no source task and every other class a target. The schema wants ids; only the dataset
    knows its names."""
    data = dict(data)
    dataset = data.get("dataset", config.DataParams.model_fields["dataset"].default)
    folder = data.get("folder", config.DataParams.model_fields["folder"].default)
    if dataset == FOLDER or any(
        isinstance(c, str) for k in DEFAULT_CLASSES for c in (data.get(k) or [])
    ):
        try:
            names = dataset_class_names(dataset, folder)
        except folder_dataset.FolderError as exc:
            raise ParamsProblem(("data", "folder"), folder, str(exc)) from None
    else:
        names = None
    for key in DEFAULT_CLASSES:
        if isinstance(data.get(key), list):
            data[key] = _class_ids(key, data[key], names)
    if dataset == FOLDER:
        source = data.setdefault("source_classes", [])
        if data.get("target_classes") is None:
            data["target_classes"] = [i for i in range(len(names)) if i not in source]
    else:
        for key, default in DEFAULT_CLASSES.items():
            if data.get(key) is None:
                data[key] = default
    return data


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


def _fits_model_file(params: Params, name: str, spec: BackboneParams) -> None:
    """Image size and by_name patterns against the file's own config."""
    found = model_file.describe(spec.weights)
    if found is None:
        return
    shape, sizes = found.input_shape, params.data.sizes
    fixed = shape and len(shape) == 4 and any(d is not None for d in shape[1:3])
    if fixed and any(d not in (None, size) for d in shape[1:3] for size in sizes):
        raise ParamsProblem(
            ("data", "image_size"),
            params.data.image_size,
            f"backbone {name!r} ({spec.weights}) takes {shape[1]}x{shape[2]} images only; "
            "set data.image_size to match (or save the model with a (None, None, 3) input "
            "to search sizes)",
        )
    if "by_name" in params.search.strategies and (spec.by_name or params.search.by_name):
        _patterns_match(params, name, spec, found.layers, spec.weights)


def _fits_weights_file(name: str, spec: BackboneParams, arch: str) -> None:
    """A weights-only file against the architecture and width it is loaded into: which
    architectures and widths have exactly as many values (zoo fingerprints), else the
    stem's layer name (in the published layout) and its number of filters."""
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
    fits = zoo.fitting(found.fingerprint)
    if fits:
        _fits_by_fingerprint(name, spec, arch, found, fits)
    else:  # a file Thaw has no count for (another Keras's layout, an unpublished width)
        _fits_by_stem(name, spec, arch, found)


def _fits_by_fingerprint(
    name: str, spec: BackboneParams, arch: str, found, fits: list[tuple[str, float]]
) -> None:
    member = backbones.ARCHITECTURES[arch].member
    alpha = spec.alpha if member.has_width else 1.0
    if (arch, alpha) in fits:
        return
    same = [a for other, a in fits if other == arch]
    if same:
        raise _wrong_width(name, spec, arch, found, same[0])
    other, other_alpha = fits[0]
    width = f" at alpha {other_alpha}" if zoo.ZOO[other].has_width else ""
    raise ParamsProblem(
        ("backbones", name, "arch"), arch, f"{spec.weights} holds {other} weights{width} "
        f"(exactly as many values, {found.fingerprint:,}, as {other}{width} has); set "
        f"backbones.{name}.arch: {other}"
        + (f" and alpha: {other_alpha}" if width and other_alpha != spec.alpha else ""),
    )  # fmt: skip


def _wrong_width(name: str, spec: BackboneParams, arch: str, found, fits: float) -> ParamsProblem:
    """The file holds `arch` weights at width `fits`, not at spec.alpha."""
    entry = backbones.ARCHITECTURES[arch]
    expected = entry.stem_filters(spec.alpha) if entry.stem_filters else found.stem_filters
    if found.stem_filters != expected:
        said = (f"has {found.stem_filters} filters in its first convolution, {arch} at alpha "
                f"{spec.alpha} has {expected}")  # fmt: skip
    else:  # MobileNetV3's stem has 16 filters at every width
        said = f"holds {arch} weights at another width ({found.fingerprint:,} values)"
    return ParamsProblem(
        ("backbones", name, "alpha"), spec.alpha, f"{spec.weights} {said}; the file fits "
        f"alpha {fits}"
    )  # fmt: skip


def _fits_by_stem(name: str, spec: BackboneParams, arch: str, found) -> None:
    entry = backbones.ARCHITECTURES[arch]
    named = [a for a, e in backbones.ARCHITECTURES.items() if e.stem and e.stem in found.layers]
    if named and arch not in named:
        raise ParamsProblem(
            ("backbones", name, "arch"), arch, f"{spec.weights} holds {' or '.join(named)} "
            f"weights (it has layer {backbones.ARCHITECTURES[named[0]].stem!r}); set "
            f"backbones.{name}.arch: {named[0] if len(named) == 1 else 'one of them'}",
        )  # fmt: skip
    if entry.stem_filters is None:
        return
    expected = entry.stem_filters(spec.alpha)
    if found.stem_filters != expected:
        fits = [a for a in ALPHAS if entry.stem_filters(a) == found.stem_filters]
        raise ParamsProblem(
            ("backbones", name, "alpha"),
            spec.alpha,
            f"{spec.weights} has "
            f"{found.stem_filters} filters in its first convolution, {arch} at alpha "
            f"{spec.alpha} has {expected}" + (f"; the file fits alpha {fits[0]}" if fits else ""),
        )


def _by_name_fits_architecture(params: Params, name: str, spec: BackboneParams, arch: str) -> None:
    """by_name patterns against the built architecture's layer names (random weights:
    nothing is downloaded). Only when by_name is searched: it imports TensorFlow."""
    if arch not in backbones.ARCHITECTURES:
        return
    if backbones.min_image_size(arch) > params.data.sizes[0]:
        return  # reported below, by the image-size check
    import keras  # slow import: only when by_name is searched

    model = backbones.build(arch, params.data.sizes[0], None, spec)
    layers = tuple(layer.name for layer in model.layers)
    keras.backend.clear_session()
    _patterns_match(params, name, spec, layers, arch)


def _patterns_match(
    params: Params, name: str, spec: BackboneParams, layers: tuple[str, ...], where: str
) -> None:
    """Every by_name pattern (the backbone's, else search's) names a layer of `layers`."""
    patterns = spec.by_name or params.search.by_name
    try:
        resolve_layer_patterns(layers, list(patterns))
    except ThawError as exc:
        key = ("backbones", name, "by_name") if spec.by_name else ("search", "by_name")
        raise ParamsProblem(key, list(patterns), f"{where}: {exc}") from None


def keras_cache() -> Path:
    """Where Keras keeps downloaded weights (keras.utils.get_file's default)."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "models"


def _imagenet_reachable(name: str, spec: BackboneParams, image_size: int) -> None:
    """`weights: imagenet` without a network and without Keras's cached file fails in the
    backbone stage, after prepare: say so now, with the file to point to instead."""
    arch = spec.arch or name
    member = backbones.ARCHITECTURES[arch].member
    if member is None or (keras_cache() / zoo.cache_name(member, spec.alpha, image_size)).is_file():
        return
    if not datasets.network_available():
        raise ParamsError(
            f"backbones.{name}.weights = 'imagenet': this machine cannot reach "
            f"storage.googleapis.com and Keras's cache ({keras_cache()}) lacks the file. "
            + backbones.offline_advice(arch, spec.alpha, image_size)
        )
