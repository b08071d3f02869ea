"""What a weights-only file says about itself, read without TensorFlow.

`keras.applications` publish ImageNet weights as weights-only `.h5` files (no model
config: a layer list with each layer's tensors); Keras 3 writes `.weights.h5`. Either
fits one architecture at one width. How many values its tensors hold (the fingerprint)
names the architecture and width among the zoo's (models/zoo.py: no two share one); the
stem, the only convolution over the 3 input channels, tells the width (MobileNet's
alpha), and in the published layout its layer name tells the family: enough for `thaw
check` to refuse a file that cannot fit before any work starts. The backbone stage then
loads it, tensor by tensor."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import BackboneParams

MODEL = "model"  # a whole model (.keras, or .h5 with a model config)
WEIGHTS = "weights"  # weights only, for a built-in architecture


@dataclass(frozen=True)
class WeightsFile:
    layers: tuple[str, ...]  # layer names as stored (Keras 3 files store generic ones)
    stem_layer: str | None  # the layer whose kernel reads the 3 input channels
    stem_filters: int | None  # that kernel's output channels
    # values in its tensors of one or more dimensions: zoo.Member.fingerprints (a scalar,
    # such as a Normalization layer's sample count, differs between Keras versions)
    fingerprint: int = 0


def kind(path: str | Path) -> str:
    """MODEL or WEIGHTS: `.weights.h5` and an `.h5` without a model config hold weights only."""
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        return WEIGHTS
    if path.suffix != ".h5":
        return MODEL
    import h5py  # installed with Keras

    try:
        with h5py.File(path, "r") as f:
            return MODEL if "model_config" in f.attrs else WEIGHTS
    except OSError:
        return MODEL  # not HDF5: loading it as a model says what is wrong


def model_path(spec: BackboneParams) -> str | None:
    """The path in a backbone's `weights` when it holds a whole model (.keras, or .h5 with
    its config); None for source, imagenet and a weights-only file."""
    path = spec.file
    return path if path is not None and kind(path) == MODEL else None


def weights_path(spec: BackboneParams) -> str | None:
    """The path in a backbone's `weights` when it holds weights only, for the built-in
    `arch`."""
    return spec.file if spec.file is not None and model_path(spec) is None else None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(path: str | Path) -> WeightsFile | None:
    """The file's layers, stem and fingerprint; None when it cannot be read as HDF5."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs:  # the layout keras.applications publish
                layers = tuple(_text(n) for n in f.attrs["layer_names"])
                tensors = [
                    (name, f[name][_text(w)].shape)
                    for name in layers
                    for w in f[name].attrs.get("weight_names", [])
                ]
            else:  # Keras 3: layers/<generic name>/vars/<i>, nested models inside
                layers = tuple(f.get("layers", {}))
                tensors = _keras3_tensors(f)
    except OSError:
        return None
    stems = [(name, shape[-1]) for name, shape in tensors if len(shape) == 4 and shape[2] == 3]
    stem_layer, filters = stems[0] if len(stems) == 1 else (None, None)
    count = sum(math.prod(shape) for _, shape in tensors if len(shape) >= 1)
    return WeightsFile(layers, stem_layer, None if filters is None else int(filters), count)


def _keras3_tensors(f) -> list[tuple[str, tuple[int, ...]]]:
    """(top-level layer, shape) of every variable in a Keras 3 weights file, nested
    models' included."""
    import h5py

    found: list[tuple[str, tuple[int, ...]]] = []

    def visit(name: str, item) -> None:
        parts = name.split("/")
        if isinstance(item, h5py.Dataset) and parts[0] == "layers" and "vars" in parts:
            found.append((parts[1], item.shape))

    f.visititems(visit)
    return found


def fingerprint(weights) -> int:
    """A model's counterpart of WeightsFile.fingerprint, from its weights."""
    return sum(math.prod(w.shape) for w in weights if len(w.shape) >= 1)


def flat_layout(path: str | Path) -> bool:
    """Whether a weights-only file is Keras 3's own with no nested model in it: the
    layout a model whose every layer sits at the top writes (Thaw's backbones, models/
    graph.flat). Keras's downloads and a keras.applications model's own `.weights.h5`
    (ConvNeXt's nested stem) are not, and load as Keras loads them."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "layers" not in f:
                return False
            return not any("layers" in group for group in f["layers"].values())
    except OSError:
        return False


# --- Compact files: an ImageNet backbone small enough for git ----------------------------
# Kernels of at least INT8_FROM weights are stored as int8 with one float32 scale per
# output channel (symmetric, round to nearest: weight-only post-training quantisation);
# smaller kernels as float16; BatchNorm and bias vectors stay float32. The large kernels
# are the last layers' pointwise convolutions, where an error has few layers left to
# grow through. Loading expands the file to float32 that Keras reads as it would the
# download. MobileNetV2 1.0: 9.4 MB to 3.4 MB (docs/weights.md: what that costs in accuracy).

INT8 = "thaw_int8"  # file attribute marking the layout; the per-tensor "scale" attribute
INT8_FROM = 100_000


def _channel_axis(shape: tuple[int, ...]) -> int:
    """Output channels: the last axis, except a depthwise kernel's (k, k, C, 1): C."""
    return len(shape) - 2 if shape[-1] == 1 and len(shape) == 4 else len(shape) - 1


def quantise(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 values and float32 per-channel scales with values * scales ~= kernel."""
    axis = _channel_axis(kernel.shape)
    others = tuple(i for i in range(kernel.ndim) if i != axis)
    peak = np.abs(kernel).max(axis=others, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    return np.clip(np.rint(kernel / scale), -127, 127).astype(np.int8), scale


def _copy_tree(src, dst, convert) -> None:
    import h5py

    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            _copy_tree(item, dst.create_group(name), convert)
        else:
            convert(item, dst, name)


def compact(src: str | Path, dst: str | Path) -> None:
    """Write `src` (a keras.applications weights-only .h5) with compact kernels."""
    import h5py

    def convert(dataset, group, name) -> None:
        values = dataset[()]
        if values.ndim < 2 or values.dtype != np.float32:
            group.create_dataset(name, data=values)
        elif values.size < INT8_FROM:
            group.create_dataset(name, data=values.astype(np.float16))
        else:
            q, scale = quantise(values)
            group.create_dataset(name, data=q, compression="gzip", compression_opts=9)
            group[name].attrs["scale"] = scale

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as out:
        if "layer_names" not in f.attrs:
            raise ValueError(f"{src}: not in the layout keras.applications publish")
        _copy_tree(f, out, convert)
        out.attrs[INT8] = 1


def is_compact(path: str | Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get(INT8, 0))
    except OSError:
        return False


def expanded(path: str | Path, into: Path) -> Path:
    """`path` as Keras can load it: a compact file expanded to float32 in the folder
    `into`; any other file as it is."""
    import h5py

    path = Path(path)
    if not is_compact(path):
        return path

    def convert(dataset, group, name) -> None:
        values = dataset[()]
        if "scale" in dataset.attrs:
            values = values.astype(np.float32) * dataset.attrs["scale"]
        elif values.dtype == np.float16:
            values = values.astype(np.float32)
        group.create_dataset(name, data=values)

    target = into / path.name
    with h5py.File(path, "r") as f, h5py.File(target, "w") as out:
        _copy_tree(f, out, convert)
        del out.attrs[INT8]
    return target
