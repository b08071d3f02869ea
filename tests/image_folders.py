"""Generated image folders: colour-coded classes that a tiny CNN can learn, in every mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {
    "ant": (220, 40, 40), "bee": (40, 200, 40), "cat": (40, 40, 220),
    "dog": (220, 220, 40), "eel": (40, 220, 220), "fox": (220, 40, 220),
}  # fmt: skip


def picture(rng, colour, shape=None) -> np.ndarray:
    """A noisy patch of one colour, with a random size between 12 and 40 pixels a side."""
    h, w = shape or rng.integers(12, 40, 2)
    noise = rng.integers(-40, 40, (h, w, 3))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


def write(path: Path, pixels: np.ndarray, index: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = ("png", "jpg", "bmp", "gif")[index % 4]
    Image.fromarray(pixels).save(path.with_suffix(f".{ext}"))


def class_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """`root/<class>/<image>` with counts[class] images each."""
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        for i in range(n):
            write(root / name / f"img{i:03d}", picture(rng, COLOURS[name]), i)
    return root


def split_folder(root: Path, train: dict[str, int], test: dict[str, int], seed: int = 0) -> Path:
    """`root/train/<class>/…` and `root/test/<class>/…`, plus every awkward kind of file:
    a corrupt JPEG, a text file, grayscale, RGBA, palette and 16-bit PNGs, and one train
    image copied into test (the same bytes in two splits)."""
    rng = np.random.default_rng(seed)
    for split, counts in (("train", train), ("test", test)):
        for name, n in counts.items():
            for i in range(n):
                write(root / split / name / f"img{i:03d}", picture(rng, COLOURS[name]), i)
    dog = root / "train" / "dog"
    Image.fromarray(picture(rng, COLOURS["dog"], (64, 64))).save(dog / "broken.jpg")
    whole = (dog / "broken.jpg").read_bytes()
    (dog / "broken.jpg").write_bytes(whole[: len(whole) // 2])  # a truncated download
    (dog / "notes.txt").write_text("not an image")
    grey = picture(rng, COLOURS["dog"])[..., 0]
    Image.fromarray(grey).save(dog / "grey.png")
    rgba = np.dstack([picture(rng, COLOURS["dog"], (20, 20)), np.full((20, 20), 255, np.uint8)])
    Image.fromarray(rgba).save(dog / "rgba.png")
    Image.fromarray(picture(rng, COLOURS["dog"])).convert("P").save(dog / "palette.png")
    wide = (grey.astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(wide).save(dog / "deep16.png")
    copied = next(iter(sorted((root / "train" / "eel").iterdir())))
    (root / "test" / "eel" / f"dup{copied.suffix}").write_bytes(copied.read_bytes())
    return root
