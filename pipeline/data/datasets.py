"""Datasets through TFDS, the split manifest, and loading splits as arrays.

A dataset is Thaw's offline `digits` builder, any TFDS catalog name, or a folder
of the user's images (folder_dataset.py). All are built into one data_dir and
read back through TFDS. The splits
Thaw uses (source classes for pretraining; target classes with a few labels
each, a validation split and a held-out test split) are indices into the
concatenation of the builder's own splits, written to a JSON manifest.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import operator
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import FOLDER, RESIZE_RULES  # noqa: F401  (this module's interface too)
from pipeline.data import image_store
from pipeline.data.image_store import CHUNK
from pipeline.errors import ThawError

SOURCE_SPLITS = ("source_train", "source_val")
TARGET_SPLITS = ("train", "val", "test")


class DatasetError(ThawError):
    """The dataset could not be built or does not fit the requested splits."""


@dataclass(frozen=True)
class Split:
    images: image_store.Rows  # uint8 (n, size, size, 3) on disk, read when indexed
    labels: np.ndarray  # int32 in 0..k-1, k = number of source or target classes

    def __len__(self) -> int:
        return len(self.labels)


# FOLDER: data.dataset for the user's own images (data.folder); RESIZE_RULES: data.resize,
# to a square before scaling to image_size. Named once, in the params schema.


def tfds_name(dataset: str) -> str:
    if dataset == FOLDER:
        from pipeline.data import folder_dataset

        return folder_dataset.NAME
    if dataset == "digits":
        from pipeline.data import digits  # registers the builder with TFDS

        return digits.BUILDER_NAME
    return dataset


# Where TFDS keeps most catalog files; if it cannot be reached, a download would
# retry for minutes before failing, so Thaw says so at once instead.
DOWNLOAD_PROBE = ("storage.googleapis.com", 443)


def network_available(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(DOWNLOAD_PROBE, timeout=timeout).close()
        return True
    except OSError:
        return False


def prepare_builder(dataset: str, data_dir: str | Path, check_network: bool = True):
    """Build (or find already built) the dataset under data_dir."""
    import tensorflow_datasets as tfds

    from pipeline.data import folder_dataset

    if dataset == FOLDER:  # written by `prepare` (folder_dataset.store), only read here
        return folder_dataset.open_builder(data_dir)
    name = tfds_name(dataset)
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
        if check_network and dataset != "digits" and not builder.is_prepared():
            if not network_available():
                raise ConnectionError(
                    "no network: the dataset is not in data_dir and cannot be downloaded"
                )
        if dataset == "digits":  # local data: TFDS's "Downloading … Unknown size" says nothing
            tfds.disable_progress_bar()
            with contextlib.redirect_stdout(io.StringIO()), folder_dataset.deterministic_examples():
                builder.download_and_prepare()
        else:  # a real download: its size and progress are worth seeing
            with folder_dataset.deterministic_examples():
                builder.download_and_prepare()
    except Exception as exc:
        hint = (
            ""
            if dataset == "digits"
            else (
                "\nCatalog datasets need a network the first time. Offline, set "
                "`data.dataset: digits` (it ships with scikit-learn)."
            )
        )
        raise DatasetError(
            f"Could not download and prepare TFDS dataset {dataset!r} into {data_dir}: "
            f"{type(exc).__name__}: {exc}{hint}"
        ) from exc
    return builder


def resizer(image_size: int, rule: str = "crop", name: str = "resize"):
    """The one resizing rule, here and inside an exported model (export.py): the centre
    square (`crop`) or the image padded with black to a square (`pad`), then bilinear
    with antialiasing to image_size x image_size. Keras's own layer, so both agree."""
    import keras

    if rule not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {rule!r}; accepted: {list(RESIZE_RULES)}")
    return keras.layers.Resizing(
        image_size,
        image_size,
        interpolation="bilinear",
        crop_to_aspect_ratio=rule == "crop",
        pad_to_aspect_ratio=rule == "pad",
        antialias=True,
        name=name,
    )


def to_uint8(resized) -> np.ndarray:
    return np.clip(np.round(np.asarray(resized)), 0, 255).astype(np.uint8)


def stream_examples(builder, image_size: int, rule: str = "crop", batch: int = CHUNK):
    """Every example of every split (TFDS's "all", in a fixed order), resized to RGB uint8,
    as (images, labels) batches: never the whole dataset in memory."""
    import tensorflow as tf

    supervised = bool(builder.info.supervised_keys)  # a folder dataset has image and label
    ds = builder.as_dataset(split="all", as_supervised=supervised, shuffle_files=False)
    if not supervised:
        ds = ds.map(lambda ex: (ex["image"], ex["label"]))
    resize = resizer(image_size, rule)
    ds = ds.map(lambda x, y: (_to_rgb(x, resize), y), num_parallel_calls=tf.data.AUTOTUNE)
    for images, labels in ds.batch(batch).as_numpy_iterator():
        yield images, labels.astype(np.int32)


def load_examples(builder, image_size: int, rule: str = "crop") -> tuple[np.ndarray, np.ndarray]:
    """Every example as one array: for small datasets and tests (stages stream them)."""
    batches = list(stream_examples(builder, image_size, rule))
    if not batches:
        raise DatasetError(f"TFDS dataset {builder.name!r} has no examples")
    images, labels = zip(*batches)
    return np.concatenate(images), np.concatenate(labels)


def write_arrays(builder, image_size: int, rule: str, folder: Path) -> tuple[np.ndarray, str]:
    """Every example streamed from TFDS into the image file `arrays_path` names (and its
    labels beside it), hashed on the way. Returns the labels and the content digest."""
    h, labels = hashlib.sha256(), []

    def chunks():
        for images, batch_labels in stream_examples(builder, image_size, rule):
            h.update(np.ascontiguousarray(images).data)
            labels.append(batch_labels)
            yield images

    pending = folder / f"pending.{os.getpid()}.npy"
    image_store.write(pending, (image_size, image_size, 3), np.uint8, chunks())
    if not labels:
        pending.unlink()
        raise DatasetError(f"TFDS dataset {builder.name!r} has no examples")
    labels = np.concatenate(labels)
    h.update(np.asarray(labels, np.int64).tobytes())
    digest = h.hexdigest()
    path = arrays_path(folder, digest, image_size, rule)
    np.save(path.with_name(path.stem + ".labels.npy"), labels)
    pending.replace(path)
    return labels, digest


def arrays_path(folder: Path, digest: str, size: int, rule: str) -> Path:
    return Path(folder) / f"{digest[:32]}_{size}_{rule}.npy"


def _to_rgb(image, resize):
    import tensorflow as tf

    image = resize(tf.cast(image, tf.float32))
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


PerClass = int | float | str  # a count, a fraction of the class, or "all"


def split_counts(train: PerClass, val: PerClass, n: int, reserve: int) -> tuple[int, int]:
    """Train and val images of a class with `n` to share, `reserve` of them kept for test:
    a count as it is, a fraction of n (at least one), "all" what the other leaves."""

    def count(spec: PerClass) -> int | None:
        if spec == "all":
            return None
        return max(1, round(spec * n)) if isinstance(spec, float) else int(spec)

    k_train, k_val = count(train), count(val)
    if k_train is None:
        k_train = n - k_val - reserve
    if k_val is None:
        k_val = n - k_train - reserve
    return k_train, k_val


def split_indices(
    labels: np.ndarray,
    *,
    seed: int,
    source_classes: list[int],
    target_classes: list[int],
    train_per_class: PerClass,
    val_per_class: PerClass,
    source_val_fraction: float,
    given_test: np.ndarray | None = None,
    given_val: np.ndarray | None = None,
    names: list[str] | None = None,
) -> dict[str, list[int]]:
    """Deterministic in the seed: per-class shuffles, then slices of `split_counts` sizes.

    `given_test`, `given_val` (masks): a target class's test (val) split is exactly those
    examples, and the other splits come from the rest; what they leave over is not used.
    """
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {name: [] for name in SOURCE_SPLITS + TARGET_SPLITS}
    available = set(np.unique(labels).tolist())
    for cls in source_classes + target_classes:
        if cls not in available:
            raise DatasetError(f"class id {cls} has no examples; ids present: {sorted(available)}")
    for cls in source_classes:
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = max(1, int(round(len(idx) * source_val_fraction)))
        splits["source_val"] += idx[:n_val].tolist()
        splits["source_train"] += idx[n_val:].tolist()
    for cls in target_classes:
        idx = rng.permutation(np.flatnonzero(labels == cls))
        test, val = _given(idx, given_test), _given(idx, given_val)
        taken = set(test) | set(val)
        idx = np.array([i for i in idx if i not in taken], dtype=np.int64)
        reserve = 0 if test else 1
        label = f"{names[cls]!r}" if names else str(cls)
        if val:
            k_train = split_counts(train_per_class, 0, len(idx), reserve)[0]
            k_val = 0
        else:
            k_train, k_val = split_counts(train_per_class, val_per_class, len(idx), reserve)
        if k_train < 1 or (k_val < 1 and not val) or k_train + k_val + reserve > len(idx):
            where = " outside test/" if test else ""
            where += " and val/" if val else ""
            raise DatasetError(
                f"target class {label} has {len(idx)} examples{where}; train_per_class "
                f"{train_per_class!r}{'' if val else f' and val_per_class {val_per_class!r}'} "
                f"ask for {k_train}{'' if val else f' + {k_val}'}"
                f"{'' if test else ' + at least one test example'}"
            )
        splits["train"] += idx[:k_train].tolist()
        splits["val"] += val or idx[k_train : k_train + k_val].tolist()
        splits["test"] += test or idx[k_train + k_val :].tolist()
    return {name: sorted(ix) for name, ix in splits.items()}


def _given(idx: np.ndarray, mask: np.ndarray | None) -> list[int]:
    return [] if mask is None else [int(i) for i in idx if mask[i]]


def make_manifest(
    dataset: str,
    data_dir: str,
    builder,
    labels: np.ndarray,
    image_size: int,
    source_classes: list[int],
    target_classes: list[int],
    splits: dict[str, list[int]],
    resize: str = "crop",
    digest: str | None = None,
) -> dict:
    names = builder.info.features["label"].names
    counts = {
        split: {
            names[c]: int(np.sum(labels[ix] == c))
            for c in _classes_of(split, source_classes, target_classes)
        }
        for split, ix in splits.items()
    }
    return {
        "dataset": dataset,
        "tfds_name": builder.name,
        "tfds_version": str(builder.version),
        "data_dir": str(data_dir),
        "image_size": image_size,
        "resize": resize,
        "num_examples": int(len(labels)),
        "data_sha256": digest,  # of every image and label as read (write_arrays)
        "class_names": names,
        "source_classes": source_classes,
        "target_classes": target_classes,
        "counts": counts,
        "splits": splits,
    }


def _classes_of(split: str, source: list[int], target: list[int]) -> list[int]:
    return source if split in SOURCE_SPLITS else target


def write_manifest(manifest: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def read_manifest(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_size(images: np.ndarray, size: int) -> np.ndarray:
    """Stored images (square, at the largest searched size) scaled to `size`: the same
    Keras resizing rule, so an exported model can do exactly this (export.py)."""
    images = np.asarray(images)
    if images.shape[1] == size:
        return images
    resize = resizer(size, "crop")
    batches = (images[i : i + 256].astype(np.float32) for i in range(0, len(images), 256))
    return np.concatenate([to_uint8(resize(batch)) for batch in batches])


def stored_arrays(manifest: dict, size: int | None = None) -> tuple[image_store.Rows, np.ndarray]:
    """Every prepared image at `size` (default: as stored) as rows of a file on disk, and
    every label. The file is found by the data's digest, or written once: from TFDS at
    the stored size (prepare writes that one), scaled from it for a smaller size."""
    stored, rule = manifest["image_size"], manifest.get("resize", "crop")
    folder, digest = image_store.folder(), manifest.get("data_sha256")
    path = arrays_path(folder, digest, stored, rule) if digest else None
    if path is None or not path.is_file():
        builder = prepare_builder(manifest["dataset"], manifest["data_dir"])
        _, digest = write_arrays(builder, stored, rule, folder)
        path = arrays_path(folder, digest, stored, rule)
    labels = np.load(path.with_name(path.stem + ".labels.npy"))
    size = size or stored
    if size == stored:
        return image_store.Rows(path), labels
    smaller = arrays_path(folder, digest, size, rule)
    if not smaller.is_file():
        rows = image_store.Rows(path)
        scaled = (to_size(batch, size) for batch in rows.batches())
        image_store.write(smaller, (size, size, 3), np.uint8, scaled)
    return image_store.Rows(smaller), labels


def load_splits(
    manifest: dict, names: tuple[str, ...], size: int | None = None
) -> dict[str, Split]:
    """The named splits at `size` (default: as stored), labels renumbered within source
    or target classes. Images are rows on disk, read when indexed (image_store.Rows)."""
    images, labels = stored_arrays(manifest, size)
    out = {}
    for name in names:
        classes = _classes_of(name, manifest["source_classes"], manifest["target_classes"])
        remap = {c: i for i, c in enumerate(classes)}
        ix = np.asarray(manifest["splits"][name], dtype=np.int64)
        out[name] = Split(images.select(ix), np.array([remap[c] for c in labels[ix]], np.int32))
    return out


TRAINVAL = "trainval"  # train and val together: what the final stage retrains on


def load_target_splits(
    manifest: dict, names: tuple[str, ...], size: int | None = None
) -> dict[str, Split]:
    """Target splits by name at `size`; `trainval` is train followed by val."""
    stored = tuple(dict.fromkeys(n for s in names for n in _parts(s)))
    loaded = load_splits(manifest, stored, size)
    out = {}
    for name in names:
        parts = [loaded[p] for p in _parts(name)]
        images = functools.reduce(operator.add, [p.images for p in parts])
        out[name] = Split(images, np.concatenate([p.labels for p in parts]))
    return out


def _parts(name: str) -> tuple[str, ...]:
    return ("train", "val") if name == TRAINVAL else (name,)
