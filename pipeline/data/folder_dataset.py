"""A folder of images per class, materialised once as a TFDS dataset.

Two layouts: `<folder>/<class>/<image>` (Thaw makes every split), or
`<folder>/train/<class>/…` plus `<folder>/test/<class>/…` (the given test split
is kept; validation comes out of train, unless a `val/` or `validation/` folder
beside them gives it too). Class ids are the folder names in
sorted order. Every file is read (image_files.read_rgb), resized by the
`data.resize` rule to `image_size` and stored with
`tfds.dataset_builders.store_as_tfds_dataset` under the data_dir, so later stages
read TFDS exactly as they do for a catalog dataset. A file that cannot be used is
skipped and listed, with its reason; nothing is written until every file is read.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import progress
from pipeline.data import image_files
from pipeline.errors import ThawError

NAME = "thaw_folder"
VERSION = "1.0.0"
GIVEN = ("train", "test")  # the split layout's two folders
VAL = ("val", "validation")  # a given validation split beside them, under either name


class FolderError(ThawError):
    """The image folder cannot make a dataset: the message names what is wrong."""


@dataclass(frozen=True)
class Layout:
    root: Path
    classes: tuple[str, ...]  # sorted folder names: class id i is classes[i]
    given_splits: bool  # train/ and test/ folders, or one folder per class
    stray: tuple[Path, ...]  # files outside any class folder
    val_dir: str | None = None  # val/ or validation/ beside train/ and test/

    def class_dirs(self) -> list[tuple[str, int, Path]]:
        """(given split, class id, folder) for every class folder present."""
        tops = [(s, self.root / s) for s in GIVEN] if self.given_splits else [("", self.root)]
        if self.val_dir:
            tops.append(("val", self.root / self.val_dir))
        return [
            (split, cid, top / name)
            for split, top in tops
            for cid, name in enumerate(self.classes)
            if (top / name).is_dir()
        ]


def _subdirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not image_files.ignored(p.name))


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not image_files.ignored(p.name))


def scan(folder: str | Path) -> Layout:
    """The folder's layout and classes, from its directory names alone (no image is read)."""
    root = Path(folder)
    if not root.is_dir():
        raise FolderError(f"data.folder {str(folder)!r} is not a directory")
    top = _subdirs(root)
    given = {"train", "test"} <= set(top)
    val_dir = None
    if given:
        train, test = _subdirs(root / "train"), _subdirs(root / "test")
        missing = sorted(set(test) - set(train))
        if missing:
            raise FolderError(
                f"{root}/test has classes {missing} that {root}/train does not; every test "
                "class needs training images"
            )
        val_dir = next((d for d in VAL if d in top), None)
        extra = sorted(set(_subdirs(root / val_dir)) - set(train)) if val_dir else []
        if extra:
            raise FolderError(
                f"{root}/{val_dir} has classes {extra} that {root}/train does not; every "
                "validation class needs training images"
            )
        classes = train
        stray = _files(root) + _files(root / "train") + _files(root / "test")
        stray += _files(root / val_dir) if val_dir else []
        stray += [root / d for d in top if d not in (*GIVEN, val_dir)]
    else:
        classes, stray = top, _files(root)
    if not classes:
        raise FolderError(
            f"{root} has no class folders; expected {root}/<class>/<image> or "
            f"{root}/train/<class>/… with {root}/test/<class>/…"
        )
    if len(classes) < 2:
        raise FolderError(f"{root} has a single class ({classes[0]!r}); a classifier needs two")
    return Layout(root, tuple(classes), given, tuple(stray), val_dir)


class Spool:
    """Each image read, PNG-encoded, in a temporary file until the dataset is written:
    a folder of any size is read in bounded memory, and nothing is written under the
    data_dir until every file is read and checked."""

    def __init__(self):
        self._file = tempfile.TemporaryFile()
        self._offsets = [0]

    def append(self, encoded: bytes) -> None:
        self._file.write(encoded)
        self._offsets.append(self._offsets[-1] + len(encoded))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __iter__(self) -> Iterator[bytes]:
        self._file.seek(0)
        for begin, end in zip(self._offsets, self._offsets[1:]):
            yield self._file.read(end - begin)


@dataclass
class Read:
    images: Spool = field(default_factory=Spool)  # PNG bytes, (size, size, 3) each
    labels: list[int] = field(default_factory=list)
    given_test: list[bool] = field(default_factory=list)
    given_val: list[bool] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # relative to the folder
    digests: list[str] = field(default_factory=list)  # sha256 of the file's bytes
    skipped: list[image_files.Skipped] = field(default_factory=list)
    small: list[dict] = field(default_factory=list)  # used, but upscaled more than SMALL times


SMALL = 4  # an image upscaled more than this many times is used, with a warning


def read_all(layout: Layout, resize, size: int = 0) -> Read:
    """Every usable image, resized by `resize` (a callable on one uint8 image) to `size`."""
    out = Read()
    for path in layout.stray:
        where = "a folder" if path.is_dir() else "a file"
        out.skipped.append(
            image_files.Skipped(_rel(path, layout.root), f"{where} outside any class folder")
        )
    files = [
        (split, cid, path)
        for split, cid, folder in layout.class_dirs()
        for path in image_files.image_files(folder)
    ]
    bar = progress.bar(None, "prepare: reading images", total=len(files), unit="img")
    with bar, ThreadPoolExecutor(os.cpu_count()) as pool:  # decoders release the GIL
        for begin in range(0, len(files), READ_CHUNK):  # bounded: a chunk in flight
            chunk = files[begin : begin + READ_CHUNK]
            for (split, cid, path), got in zip(chunk, pool.map(_read_one(resize), chunk)):
                bar.update()
                if isinstance(got, image_files.UnreadableImage):
                    out.skipped.append(image_files.Skipped(_rel(path, layout.root), str(got)))
                    continue
                (height, width), encoded, digest = got
                if min(height, width) * SMALL < size:
                    out.small.append({"path": _rel(path, layout.root), "size": f"{width}x{height}"})
                out.images.append(encoded)
                out.labels.append(cid)
                out.given_test.append(split == "test")
                out.given_val.append(split == "val")
                out.paths.append(_rel(path, layout.root))
                out.digests.append(digest)
    return out


READ_CHUNK = 256  # files read side by side before their results are stored


def _read_one(resize):
    """A file's size, its resized pixels PNG-encoded and its bytes' digest, or why not."""

    def read(item) -> tuple | image_files.UnreadableImage:
        _, _, path = item
        try:
            pixels = image_files.read_rgb(path)
        except image_files.UnreadableImage as exc:
            return exc
        encoded = png_bytes(resize(pixels))
        return pixels.shape[:2], encoded, image_files.content_digest(path)

    return read


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def check_counts(read: Read, layout: Layout, needs: dict[int, int]) -> None:
    """Each class named in `needs` (class id -> least images) has enough usable images."""
    counts = Counter(read.labels)
    short = [
        f"{layout.classes[c]!r} has {counts.get(c, 0)}, needs {n}"
        for c, n in needs.items()
        if counts.get(c, 0) < n
    ]
    if short:
        raise FolderError(
            "too few usable images: " + "; ".join(short) + " (train_per_class + val_per_class "
            "+ one test image for a target class, two for a source class; skipped files "
            "do not count)"
        )


def report_skipped(skipped: list[image_files.Skipped], root: Path) -> None:
    if not skipped:
        return
    print(f"prepare: skipped {len(skipped)} file(s) in {root}:", file=sys.stderr)
    for s in skipped:
        print(f"  {s.path}: {s.reason}", file=sys.stderr)


def leaks(read: Read, split_of: dict[int, str]) -> list[dict]:
    """Identical image bytes that landed in more than one split, with their paths."""
    where: dict[str, list[int]] = {}
    for index in sorted(split_of):
        where.setdefault(read.digests[index], []).append(index)
    return [
        {
            "sha256": d[:16],
            "splits": sorted({split_of[i] for i in ix}),
            "paths": [read.paths[i] for i in ix],
        }  # fmt: skip
        for d, ix in sorted(where.items())
        if len({split_of[i] for i in ix}) > 1
    ]


def label_conflicts(read: Read, classes: tuple[str, ...]) -> list[dict]:
    """The same image bytes filed under more than one class: one of the labels is wrong."""
    where: dict[str, list[int]] = {}
    for index, digest in enumerate(read.digests):
        where.setdefault(digest, []).append(index)
    return [
        {
            "sha256": d[:16],
            "classes": sorted({classes[read.labels[i]] for i in ix}),
            "paths": [read.paths[i] for i in ix],
        }  # fmt: skip
        for d, ix in sorted(where.items())
        if len({read.labels[i] for i in ix}) > 1
    ]


def warn(what: str, cases: list[str], advice: str) -> None:
    """A data warning on stderr, naming up to five cases."""
    if not cases:
        return
    print(f"prepare: warning: {len(cases)} {what} ({advice}):", file=sys.stderr)
    for case in cases[:5]:
        print(f"  {case}", file=sys.stderr)
    if len(cases) > 5:
        print(f"  … and {len(cases) - 5} more in data/manifest.json", file=sys.stderr)


@contextlib.contextmanager
def deterministic_examples():
    """While TFDS writes a dataset (a folder here, digits in datasets.prepare_builder):
    protobuf's deterministic serialisation of each example.

    TFDS writes a tf.train.Example, whose features are a protobuf map, and the upb
    runtime iterates a map in an order seeded per process: the same images gave other
    data/tfds bytes on every `prepare`, so DVC saw new data and re-ran every stage after
    it. Deterministic serialisation writes the map's keys sorted; readers parse either.
    """
    from tensorflow_datasets.core import example_serializer

    serializer = example_serializer.ExampleSerializer
    original = serializer.serialize_example

    def serialize_example(self, example):
        return self.get_tf_example(example).SerializeToString(deterministic=True)

    serializer.serialize_example = serialize_example
    try:
        yield
    finally:
        serializer.serialize_example = original


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless, as TFDS's Image feature stores it, but at zlib level 1: 6.6 ms a 224 px
    photo against 18.5 ms at PIL's default 6, for 6 % more bytes (measured on the shipped
    flowers). TFDS's own encoder runs a graph per image; PIL encodes in-process."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# TFDS's writer holds up to 1 GB of examples in memory, then spills them to 1,000 bucket
# files by key and reads each bucket back whole. With shuffling disabled it buckets the
# keys as given, over a 128-bit range: keys 0..n-1 all fell in bucket 0, so a large
# folder came back into memory at once (prepare peaked at 2.4 GB for 20,000 photos at
# 224 px). Keys spread evenly over the range, in order, keep each bucket 1/1000 of it.
KEY_SPACE = 2**128


def store(read: Read, layout: Layout, image_size: int, data_dir: Path):
    """Write the images as one TFDS split, in the order read; return the builder."""
    import tensorflow_datasets as tfds
    from absl import logging

    tfds.disable_progress_bar()  # prepare prints its own line
    logging.set_verbosity(logging.ERROR)  # "Variant folder … has no dataset_info.json": new
    target = Path(data_dir) / NAME
    shutil.rmtree(target, ignore_errors=True)  # a folder prepared before: replaced whole
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(image_size, image_size, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(names=list(layout.classes)),
            "path": tfds.features.Text(),
        }
    )
    spacing = KEY_SPACE // max(1, len(read.paths))
    examples = (  # already PNG-encoded (read_all): TFDS stores the bytes as they are
        (i * spacing, {"image": image, "label": label, "path": path})
        for i, (image, label, path) in enumerate(zip(read.images, read.labels, read.paths))
    )
    # TFDS's "Downloading … Unknown size" silenced; the same images, the same bytes
    with contextlib.redirect_stdout(io.StringIO()), deterministic_examples():
        return tfds.dataset_builders.store_as_tfds_dataset(
            name=NAME,
            version=VERSION,
            features=features,
            split_datasets={"train": examples},
            data_dir=str(data_dir),
            description=f"Images from {layout.root}, one folder per class.",
            disable_shuffling=True,  # the order written is the order read: manifest indices
        )


def open_builder(data_dir: str | Path):
    """The dataset `store` wrote, read back from its files."""
    import tensorflow_datasets as tfds

    path = Path(data_dir) / NAME / VERSION
    if not (path / "dataset_info.json").is_file():
        raise FolderError(f"no folder dataset under {path}; run `dvc repro prepare`")
    return tfds.builder_from_directory(str(path))
