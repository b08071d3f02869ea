"""What a Keras model file says about itself, read without TensorFlow: its input
shape and layer names, from the JSON config in a .keras zip or an .h5 file's
attributes. `thaw check` (and every stage's params check) uses it to catch an image
size or a by_name pattern that cannot fit the file before any work starts."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelFile:
    input_shape: tuple[int | None, ...] | None  # (batch, H, W, C), or None if not said
    layers: tuple[str, ...]  # top-level layer names, which by_name patterns match


def _config(path: Path) -> dict:
    if path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    import h5py  # installed with Keras

    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def describe(path: str | Path) -> ModelFile | None:
    """The file's input shape and layer names; None when its config cannot be read
    (the backbone stage, which loads the model, then reports the problem)."""
    try:
        layers = _config(Path(path))["config"]["layers"]
    except Exception:
        return None
    names = tuple(layer["config"]["name"] for layer in layers)
    shape = None
    for layer in layers:
        config = layer["config"]
        found = config.get("batch_shape") or config.get("batch_input_shape")
        if found:
            shape = tuple(found)
            break
    return ModelFile(shape, names)
