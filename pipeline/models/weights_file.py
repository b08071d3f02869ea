"""What a weights-only file says about itself, read without TensorFlow.

`keras.applications` publish ImageNet weights as weights-only `.h5` files (no model
config: a layer list with each layer's tensors); Keras 3 writes `.weights.h5`. Either
fits one architecture at one width. The stem, the only convolution over the 3 input
channels, tells the width (MobileNet's alpha), and in the published layout its layer
name tells the architecture: enough for `thaw check` to refuse a file that cannot fit
before any work starts. The backbone stage then loads it, tensor by tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL = "model"  # a whole model (.keras, or .h5 with a model config)
WEIGHTS = "weights"  # weights only, for a built-in architecture


@dataclass(frozen=True)
class WeightsFile:
    layers: tuple[str, ...]  # layer names as stored (Keras 3 files store generic ones)
    stem_layer: str | None  # the layer whose kernel reads the 3 input channels
    stem_filters: int | None  # that kernel's output channels


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


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(path: str | Path) -> WeightsFile | None:
    """The file's layers and stem; None when it cannot be read as HDF5."""
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
            else:  # Keras 3: layers/<generic name>/vars/<i>
                group = f.get("layers", {})
                layers = tuple(group)
                tensors = [
                    (name, var.shape)
                    for name in layers
                    for var in group[name].get("vars", {}).values()
                ]
    except OSError:
        return None
    stems = [(name, shape[-1]) for name, shape in tensors if len(shape) == 4 and shape[2] == 3]
    stem_layer, filters = stems[0] if len(stems) == 1 else (None, None)
    return WeightsFile(layers, stem_layer, None if filters is None else int(filters))
