"""`thaw predict <image or folder>...`: the recommendation on the user's images.

Reads `models/recommended/model.keras` (or `--model DIR`'s) and its `card.json` (class names),
reads each image by the rule `prepare` used (image_files.read_rgb: any mode to
8-bit RGB) and prints the top classes with their probabilities, or with `--csv`
one row per image with every class's probability. Images of one size are
predicted together. A file that is not a readable image is listed on stderr.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from pipeline.data import image_files
from pipeline.errors import ThawError

BATCH = 256


def files_of(paths: list[str]) -> list[Path]:
    found = []
    for given in map(Path, paths):
        if given.is_dir():
            found += image_files.image_files(given)
        elif given.is_file():
            found.append(given)
        else:
            raise ThawError(f"{given}: no such file or folder")
    return found


def load(folder: Path):
    path = folder / "model.keras"
    if not path.is_file():
        raise ThawError(f"{path} does not exist: run `dvc repro export` (or `dvc repro`) first")
    from pipeline import quiet_tf

    quiet_tf.load()
    import keras

    card = json.loads((folder / "card.json").read_text())
    return keras.models.load_model(path), card["classes"]


def probabilities(model, files: list[Path]) -> tuple[list[Path], np.ndarray]:
    """Each readable file's class probabilities (unreadable files are listed on stderr)."""
    by_shape: dict[tuple, list[tuple[int, np.ndarray]]] = {}
    kept = []
    for path in files:
        try:
            pixels = image_files.read_rgb(path)
        except image_files.UnreadableImage as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        by_shape.setdefault(pixels.shape, []).append((len(kept), pixels))
        kept.append(path)
    out = None
    for group in by_shape.values():
        index = [i for i, _ in group]
        found = model.predict(np.stack([p for _, p in group]), batch_size=BATCH, verbose=0)
        if out is None:
            out = np.zeros((len(kept), found.shape[-1]), np.float32)
        out[index] = found
    return kept, out if out is not None else np.zeros((0, 0), np.float32)


def run(folder: Path, paths: list[str], top: int = 3, as_csv: bool = False) -> int:
    files = files_of(paths)
    model, classes = load(folder)
    kept, probs = probabilities(model, files)
    if as_csv:
        _write_csv(kept, probs, classes)
    else:
        for path, p in zip(kept, probs):
            best = np.argsort(-p)[:top]
            print(f"{path}: " + ", ".join(f"{classes[i]} {p[i]:.3f}" for i in best))
    return 0 if kept else 1


def _write_csv(kept: list[Path], probs: np.ndarray, classes: list[str]) -> None:
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "predicted", "probability", *classes])
    for path, p in zip(kept, probs):
        i = int(np.argmax(p))
        writer.writerow([str(path), classes[i], f"{p[i]:.6f}", *(f"{v:.6f}" for v in p)])
