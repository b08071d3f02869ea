"""Arrays on disk, written and read a batch at a time: what keeps memory bounded by a
setting instead of by the dataset.

A stage that held every prepared image in memory needed about 0.6 MB an image at
160 px (issue 21: 5.3 GB for 2,500 photos, out of memory near 35,000 on 24 GB). Here
the images at one input size are one uint8 `.npy` file, written chunk by chunk as
TFDS streams them (`write`), and a split is `Rows`: an ordered selection of that
file's rows, read with `os.preadv` only when indexed. Reads go through the page cache
but are never mapped into the process, so they do not count in its resident memory
the way `np.load(mmap_mode="r")` pages would.

The files are a cache keyed by the data's content digest (prepare's `data_sha256`)
and size: a changed dataset can never be served stale images, and a missing file is
written again from TFDS.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from pipeline.paths import CACHE_DIR

MB = 1 << 20
CHUNK = 512  # rows per write, and per read when a whole selection is walked
DIGEST_BATCH = 64  # rows per read when hashing: scaled to float32, 512 at 224 px were 0.3 GB
FOLDER = CACHE_DIR / "_images"  # beside each backbone's activation cache


def folder() -> Path:
    return FOLDER


class Writer:
    """An `.npy` file appended to a chunk at a time, its row count written at `close`.
    Atomic: the file appears under `path` complete or not at all (two processes may
    write the same one)."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype):
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.partial")
        self.rows = 0
        self._file = open(self.partial, "wb")
        self._file.write(_header((0, *self.row_shape), self.dtype))  # the count comes last

    def append(self, chunk) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.row_shape:
            self.abort()
            raise ValueError(f"chunk of shape {chunk.shape}, rows of {self.row_shape} expected")
        self._file.write(chunk.data)
        self.rows += len(chunk)

    def close(self) -> Path:
        self._file.seek(0)
        self._file.write(_header((self.rows, *self.row_shape), self.dtype))
        self._file.close()
        self.partial.replace(self.path)
        return self.path

    def abort(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


def write(path: Path, row_shape: tuple[int, ...], dtype, chunks: Iterable) -> Path:
    """An `.npy` file of the rows of `chunks`, never whole in memory (Writer)."""
    writer = Writer(path, row_shape, dtype)
    try:
        for chunk in chunks:
            writer.append(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


HEADER_BYTES = 128  # an .npy version 1.0 header, padded to a fixed length to be rewritten


def _header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    described = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": tuple(shape)}  # fmt: skip
    length = HEADER_BYTES - 10  # magic string (6), version (2), header length (2)
    text = repr(described).ljust(length - 1) + "\n"
    return np.lib.format.magic(1, 0) + struct.pack("<H", length) + text.encode("latin1")


class Streamed:
    """Array-like data read from disk a batch at a time: indexing (an int, a slice, an
    index array) returns a NumPy array; `len`, `shape`, `batches` and `digest` never
    read more than a batch at once. The training loop and the activation cache take it
    wherever they take an array."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index) -> np.ndarray:
        raise NotImplementedError

    def batches(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        for begin in range(0, len(self), size):
            yield self[begin : begin + size]

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield from batch

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        parts = list(self.batches())
        array = np.concatenate(parts) if parts else self[0:0]
        return array if dtype is None else array.astype(dtype)

    def digest(self) -> str:
        """What `activations.array_digest` gives for the array this stands for."""
        first = self[0:1]
        h = hashlib.sha256(f"{first.dtype}{(len(self), *first.shape[1:])}".encode())
        for batch in self.batches(DIGEST_BATCH):
            h.update(np.ascontiguousarray(batch).data)
        return h.hexdigest()


class Mapped(Streamed):
    """`fn` applied to each batch read from `source` (a backbone's pixel scaling, a fresh
    augmentation): the transformed data is never whole in memory either."""

    def __init__(self, source: Streamed, fn: Callable[[np.ndarray], np.ndarray]):
        self.source, self.fn = source, fn

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self.fn(self.source[index : index + 1])[0]
        return self.fn(self.source[index])


class Rows(Streamed):
    """Rows of an `.npy` file in a given order, read from disk only when indexed.

    Indexing by an int, a slice or an index array returns a NumPy array, like the array
    it stands for; `np.asarray(rows)` reads every row (for selections known to be small).
    """

    def __init__(self, path: Path, rows: np.ndarray | None = None):
        # absolute: rows read later still come from this file when the working directory
        # has changed meanwhile (benchmarks/real_photos.py loads another project's splits)
        self.path = Path(path).absolute()
        with open(self.path, "rb") as f:
            np.lib.format.read_magic(f)
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            self._offset = f.tell()
        if fortran:
            raise ValueError(f"{self.path}: Fortran-ordered arrays are not read here")
        self.dtype = np.dtype(dtype)
        self.row_shape: tuple[int, ...] = tuple(shape[1:])
        self._row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.rows = np.arange(shape[0], dtype=np.int64) if rows is None else np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self._row_bytes

    def select(self, index) -> Rows:
        """A selection of this selection (an index array or slice), still unread."""
        return Rows._like(self, self.rows[index])

    def __add__(self, other: Rows) -> Rows:
        """This selection followed by another of the same file (train then val)."""
        if other.path != self.path:
            raise ValueError("only selections of one file concatenate")
        return Rows._like(self, np.concatenate([self.rows, other.rows]))

    @classmethod
    def _like(cls, template: Rows, rows: np.ndarray) -> Rows:
        new = cls.__new__(cls)
        new.__dict__.update(template.__dict__)
        new.rows = np.asarray(rows, dtype=np.int64)
        return new

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read(self.rows[[index]])[0]
        return self._read(self.rows[index])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self._read(self.rows)
        return array if dtype is None else array.astype(dtype)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        if not len(rows):
            return out
        flat = out.reshape(len(rows), -1).view(np.uint8)
        starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)  # runs of rows
        ends = np.append(starts[1:], len(rows))
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for begin, end in zip(starts.tolist(), ends.tolist()):
                view = memoryview(flat[begin:end]).cast("B")
                at, done = self._offset + int(rows[begin]) * self._row_bytes, 0
                while done < len(view):
                    got = os.preadv(fd, [view[done:]], at + done)
                    if got == 0:
                        raise OSError(f"{self.path}: file ends before row {rows[end - 1]}")
                    done += got
        finally:
            os.close(fd)
        return out


def held_or_streamed(images: dict, fn: Callable, budget_bytes: float) -> tuple[dict, bool]:
    """Each split through `fn` (a pixel scaling): held as one float32 tensor when all of
    them fit `budget_bytes` as float32, else `Mapped`, read and scaled a batch at a time.
    Returns the splits and whether they are streamed. A NumPy array would be converted
    batch by batch, epoch after epoch (loop._take): hold tensors, not arrays."""
    if sum(4 * x.nbytes for x in images.values()) > budget_bytes:
        return {s: Mapped(x, fn) for s, x in images.items()}, True
    import tensorflow as tf

    return {s: tf.convert_to_tensor(fn(x)) for s, x in images.items()}, False
