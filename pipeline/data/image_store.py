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
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from pipeline.paths import CACHE_DIR

CHUNK = 512  # rows per write, and per read when a whole selection is walked
FOLDER = CACHE_DIR / "_images"  # beside each backbone's activation cache


def folder() -> Path:
    return FOLDER


def write(path: Path, row_shape: tuple[int, ...], dtype, chunks: Iterable) -> Path:
    """An `.npy` file of the rows of `chunks`, never whole in memory. Atomic: the file
    appears under `path` complete or not at all (two processes may write the same one)."""
    dtype = np.dtype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    written = 0
    with open(partial, "wb") as f:
        f.write(_header((0, *row_shape), dtype))  # the count is known at the end
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=dtype)
            if chunk.shape[1:] != tuple(row_shape):
                partial.unlink()
                raise ValueError(f"chunk of shape {chunk.shape}, rows of {row_shape} expected")
            f.write(chunk.data)
            written += len(chunk)
        f.seek(0)
        f.write(_header((written, *row_shape), dtype))
    partial.replace(path)
    return path


HEADER_BYTES = 128  # an .npy version 1.0 header, padded to a fixed length to be rewritten


def _header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    described = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": tuple(shape)}  # fmt: skip
    length = HEADER_BYTES - 10  # magic string (6), version (2), header length (2)
    text = repr(described).ljust(length - 1) + "\n"
    return np.lib.format.magic(1, 0) + struct.pack("<H", length) + text.encode("latin1")


class Rows:
    """Rows of an `.npy` file in a given order, read from disk only when indexed.

    Indexing by an int, a slice or an index array returns a NumPy array, like the array
    it stands for; `np.asarray(rows)` reads every row (for selections known to be small).
    """

    def __init__(self, path: Path, rows: np.ndarray | None = None):
        self.path = Path(path)
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

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches():
            yield from batch

    def batches(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        for begin in range(0, len(self.rows), size):
            yield self._read(self.rows[begin : begin + size])

    def digest(self) -> str:
        """What `activations.array_digest` gives for the array these rows stand for."""
        h = hashlib.sha256(f"{self.dtype}{self.shape}".encode())
        for batch in self.batches():
            h.update(batch.data)
        return h.hexdigest()

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
