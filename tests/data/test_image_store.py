"""Arrays written and read a batch at a time (image_store.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import image_store
from pipeline.train.activations import array_digest


def _chunks(array: np.ndarray, size: int):
    return (array[i : i + size] for i in range(0, len(array), size))


def test_rows_read_what_was_written_in_any_order(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (37, 4, 4, 3), dtype=np.uint8)
    path = image_store.write(tmp_path / "a.npy", (4, 4, 3), np.uint8, _chunks(array, 10))
    np.testing.assert_array_equal(np.load(path), array)  # a plain .npy file
    rows = image_store.Rows(path)
    assert rows.shape == array.shape and rows.nbytes == array.nbytes
    index = np.array([5, 6, 7, 3, 36, 0, 1])  # runs and jumps
    np.testing.assert_array_equal(rows[index], array[index])
    np.testing.assert_array_equal(rows[10:20], array[10:20])
    np.testing.assert_array_equal(rows[4], array[4])
    np.testing.assert_array_equal(np.asarray(rows), array)
    np.testing.assert_array_equal(np.stack(list(rows)), array)


def test_selections_concatenate_and_hash_like_the_array(tmp_path):
    array = np.random.default_rng(1).random((20, 3), dtype=np.float32)
    rows = image_store.Rows(image_store.write(tmp_path / "b.npy", (3,), np.float32, [array]))
    train, val = rows.select(np.array([4, 2, 9])), rows.select(slice(15, 18))
    both = train + val
    expected = np.concatenate([array[[4, 2, 9]], array[15:18]])
    np.testing.assert_array_equal(np.asarray(both), expected)
    np.testing.assert_array_equal(both.select(np.array([1, 4]))[:], expected[[1, 4]])
    assert both.digest() == array_digest(expected)
    assert both.digest() != train.digest()


def test_a_bad_chunk_leaves_no_file(tmp_path):
    good = np.zeros((2, 3), np.uint8)
    with pytest.raises(ValueError, match="rows of"):
        image_store.write(tmp_path / "c.npy", (3,), np.uint8, [good, np.zeros((2, 4))])
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_reads_as_no_rows(tmp_path):
    rows = image_store.Rows(image_store.write(tmp_path / "d.npy", (2,), np.uint8, []))
    assert len(rows) == 0 and np.asarray(rows).shape == (0, 2)


def test_rows_opened_by_a_relative_path_still_read_after_a_change_of_directory(
    tmp_path, monkeypatch
):
    array = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3)
    image_store.write(tmp_path / "project" / "a.npy", (3,), np.uint8, [array])
    monkeypatch.chdir(tmp_path / "project")
    rows = image_store.Rows("a.npy")
    monkeypatch.chdir(tmp_path)  # as a benchmark that loads another project's splits does
    np.testing.assert_array_equal(rows[0:2], array)
