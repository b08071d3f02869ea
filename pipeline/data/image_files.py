"""Image files as RGB uint8 arrays, the one reading rule for `prepare` and `thaw predict`.

Accepted: JPEG, PNG, BMP and GIF (its first frame), judged by content, not by the
file name. Every mode becomes 8-bit RGB: grayscale is copied to the three channels,
16-bit samples are scaled to 8 bits (65535 -> 255), palette images are expanded,
and transparent pixels are composited over white. A JPEG's EXIF orientation is
applied, as a photo viewer would. No TensorFlow here: `thaw predict` and the
params check read folders without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("JPEG", "PNG", "BMP", "GIF")
BACKGROUND = 255  # transparent pixels become white


class UnreadableImage(ValueError):
    """A file that is not an accepted image, or could not be decoded; the reason says which."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def read_rgb(path: str | Path) -> np.ndarray:
    """The file's pixels as (height, width, 3) uint8, or UnreadableImage with the reason."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if Path(path).stat().st_size == 0:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            if image.format not in FORMATS:
                raise UnreadableImage(f"{image.format} images are not accepted ({_accepted()})")
            image.seek(0)  # a GIF's first frame
            image.load()  # decodes now: a truncated file fails here, not later
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except UnidentifiedImageError:
        raise UnreadableImage(f"not an image file ({_accepted()})") from None
    except UnreadableImage:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's decoder errors
        raise UnreadableImage(f"cannot be decoded: {exc}") from None


def _accepted() -> str:
    return "accepted: " + ", ".join(FORMATS)


def _to_rgb(image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit (or 32-bit) grey
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or wide.max() > 255 else 255.0
        grey = np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode == "P":
        image = image.convert("RGBA")
    elif mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV", "F"):
        image = image.convert("RGB")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:] / 255.0
        mixed = rgba[..., :3] * alpha + BACKGROUND * (1.0 - alpha)
        return np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def content_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


IGNORED = ("__MACOSX",)  # a macOS zip's resource forks, beside the real files


def ignored(name: str) -> bool:
    """Hidden entries (.DS_Store, .git) and what a macOS zip adds: never data."""
    return name.startswith(".") or name in IGNORED


def image_files(root: Path) -> list[Path]:
    """Every file under `root` (recursively), in a fixed order, without ignored entries."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(ignored(part) for part in p.relative_to(root).parts)
    )
