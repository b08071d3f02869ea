"""Your own images: a folder read through TFDS, every file either used or listed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pipeline.config import DataParams
from pipeline.data import datasets, folder_dataset, image_files, preparation
from pipeline.errors import ParamsError
from pipeline.preflight import parse_params
from tests.conftest import TINY_PARAMS
from tests.image_folders import class_folder, split_folder

TARGET = {"dog": 22, "eel": 14, "fox": 14}
SOURCE = {"ant": 12, "bee": 12, "cat": 12}


def folder_params(root, **data_keys):
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["data"] = {"dataset": "folder", "folder": str(root), "image_size": 32,
                   "train_per_class": 3, "val_per_class": 4, **data_keys}  # fmt: skip
    if "source_classes" not in data_keys:  # no source task: a backbone with its own weights
        raw["backbones"] = {"mobilenet_v2": {"weights": "imagenet", "alpha": 0.35}}
    return parse_params(raw)


def test_every_image_mode_becomes_rgb(tmp_path):
    grey = np.arange(0, 256, 16, dtype=np.uint8).reshape(4, 4)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[:2, :, 3] = 200, 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).convert("P").save(tmp_path / "pal.gif")
    assert (image_files.read_rgb(tmp_path / "grey.png") == grey[..., None]).all()
    assert (image_files.read_rgb(tmp_path / "deep.png") == grey[..., None]).all()  # 16 -> 8 bit
    rgb = image_files.read_rgb(tmp_path / "rgba.png")
    assert rgb.shape == (4, 4, 3) and (rgb[:2] == [200, 0, 0]).all()
    assert (rgb[2:] == 255).all()  # transparent over white
    assert image_files.read_rgb(tmp_path / "pal.gif").shape == (4, 4, 3)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    whole = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])  # a truncated download
    with pytest.raises(image_files.UnreadableImage, match="decoded"):
        image_files.read_rgb(tmp_path / "cut.png")
    (tmp_path / "a.tiff").write_bytes(b"")
    Image.fromarray(noise).save(tmp_path / "a.tiff")
    with pytest.raises(image_files.UnreadableImage, match="TIFF images are not accepted"):
        image_files.read_rgb(tmp_path / "a.tiff")


def test_split_layout_keeps_test_lists_skipped_files_and_counts_leaks(tmp_path, capsys):
    root = split_folder(tmp_path / "imgs", {**SOURCE, "dog": 10, "eel": 9, "fox": 9},
                        {"dog": 12, "eel": 5, "fox": 5})  # fmt: skip
    params = folder_params(root, source_classes=["ant", "bee", "cat"])
    assert params.data.source_classes == [0, 1, 2] and params.data.target_classes == [3, 4, 5]
    manifest = preparation.prepare(params.data, params.seed, tmp_path / "tfds")
    err = capsys.readouterr().err
    folder = manifest["folder"]
    skipped = {s["path"]: s["reason"] for s in folder["skipped"]}
    assert set(skipped) == {"train/dog/broken.jpg", "train/dog/notes.txt"}, skipped
    assert "decoded" in skipped["train/dog/broken.jpg"] and "not an image" in skipped[
        "train/dog/notes.txt"]  # fmt: skip
    assert "train/dog/broken.jpg" in err and "train/dog/notes.txt" in err
    # grey, RGBA, palette and 16-bit are read: 10 + 4 dog images in train
    assert folder["images"] == 36 + 14 + 9 + 9 + 12 + 6 + 5
    # the given test split is kept whole; val and train come out of train/
    assert manifest["counts"]["test"] == {"dog": 12, "eel": 6, "fox": 5}
    assert manifest["counts"]["train"] == {"dog": 3, "eel": 3, "fox": 3}
    assert manifest["class_names"] == ["ant", "bee", "cat", "dog", "eel", "fox"]
    # read back through TFDS exactly as later stages do
    splits = datasets.load_splits(manifest, ("test",))
    assert (
        splits["test"].images.shape == (23, 32, 32, 3) and splits["test"].images.dtype == np.uint8
    )


def test_a_duplicate_across_splits_is_counted_and_warned(tmp_path, capsys):
    root = split_folder(tmp_path / "imgs", {"dog": 12, "eel": 12}, {"dog": 4, "eel": 4})
    params = folder_params(root, train_per_class=11, val_per_class=1)
    manifest = preparation.prepare(params.data, params.seed, tmp_path / "tfds")
    leaks = manifest["folder"]["duplicates_across_splits"]
    assert len(leaks) == 1 and "test" in leaks[0]["splits"]  # the eel image copied into test
    err = capsys.readouterr().err
    assert "leakage" in err and len(leaks[0]["paths"]) == 2 and leaks[0]["paths"][0] in err


def test_a_macos_zip_empty_tiny_and_twice_filed_images_are_named(tmp_path, capsys):
    root = class_folder(tmp_path / "imgs", {"ant": 12, "bee": 12})
    (root / "__MACOSX" / "ant").mkdir(parents=True)  # what a macOS zip adds
    (root / "__MACOSX" / "ant" / "._img000.png").write_bytes(b"\x00\x05\x16\x07")
    (root / ".DS_Store").write_bytes(b"Bud1")
    (root / "ant" / ".DS_Store").write_bytes(b"Bud1")
    (root / "bee" / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.full((1, 1, 3), 40, np.uint8)).save(root / "bee" / "dot.png")
    (root / "bee" / "again.png").write_bytes((root / "ant" / "img000.png").read_bytes())
    params = folder_params(root, image_size=32)
    manifest = preparation.prepare(params.data, params.seed, tmp_path / "tfds")
    err = capsys.readouterr().err
    folder = manifest["folder"]
    assert manifest["class_names"] == ["ant", "bee"]  # __MACOSX is no class
    assert {s["path"]: s["reason"] for s in folder["skipped"]} == {
        "bee/empty.jpg": "empty file (0 bytes)"
    }  # hidden files are ignored, not skipped
    assert folder["small_images"] == [{"path": "bee/dot.png", "size": "1x1"}]
    assert "bee/dot.png: 1x1" in err
    conflicts = folder["label_conflicts"]
    assert [c["paths"] for c in conflicts] == [["ant/img000.png", "bee/again.png"]]
    assert conflicts[0]["classes"] == ["ant", "bee"] and "ant/img000.png, bee/again.png" in err


def test_class_layout_makes_stratified_seeded_splits_and_every_class_is_a_target(tmp_path):
    root = class_folder(tmp_path / "imgs", {"ant": 12, "bee": 15, "cat": 13})
    params = folder_params(root)
    assert params.data.source_classes == [] and params.data.target_classes == [0, 1, 2]
    first = preparation.prepare(params.data, 0, tmp_path / "a")
    again = preparation.prepare(params.data, 0, tmp_path / "b")
    assert first["splits"] == again["splits"]
    assert first["counts"]["test"] == {"ant": 5, "bee": 8, "cat": 6}
    assert preparation.prepare(params.data, 1, tmp_path / "c")["splits"] != first["splits"]


def test_an_imbalanced_folder_keeps_every_image_with_fractions_and_all(tmp_path):
    root = class_folder(tmp_path / "imgs", {"ant": 40, "bee": 10})
    params = folder_params(root, train_per_class=0.5, val_per_class=0.2)
    counts = preparation.prepare(params.data, 0, tmp_path / "a")["counts"]
    assert counts["train"] == {"ant": 20, "bee": 5} and counts["val"] == {"ant": 8, "bee": 2}
    assert counts["test"] == {"ant": 12, "bee": 3}  # the rest: nothing left unused
    params = folder_params(root, train_per_class="all", val_per_class=3)
    counts = preparation.prepare(params.data, 0, tmp_path / "b")["counts"]
    assert counts["train"] == {"ant": 36, "bee": 6} and counts["test"] == {"ant": 1, "bee": 1}


def test_a_given_val_folder_is_the_validation_split(tmp_path):
    root = split_folder(tmp_path / "imgs", {"dog": 14, "eel": 12}, {"dog": 4, "eel": 4})
    class_folder(root / "validation", {"dog": 5, "eel": 2}, seed=7)
    params = folder_params(root, train_per_class="all", val_per_class=4)  # val: as given
    manifest = preparation.prepare(params.data, 0, tmp_path / "tfds")
    assert manifest["counts"]["val"] == {"dog": 5, "eel": 2}
    assert manifest["counts"]["train"] == {"dog": 14 + 4, "eel": 12}  # + grey, RGBA, … in dog
    paths = manifest["folder"]
    assert not any(s["path"].startswith("validation") for s in paths["skipped"])
    assert paths["layout"] == "train/, validation/ and test/"  # the folders it used


@pytest.mark.parametrize(
    "value, message",
    [(0, "a count of images per class"), (1.5, "above 0, below 1"), ("most", "or all")],
)
def test_a_bad_split_size_names_what_is_accepted(tmp_path, value, message):
    root = class_folder(tmp_path / "imgs", {"ant": 9, "bee": 9})
    with pytest.raises(ParamsError, match=message):
        folder_params(root, train_per_class=value)
    with pytest.raises(ParamsError, match="train_per_class is all already"):
        folder_params(root, train_per_class="all", val_per_class="all")


def test_too_few_images_names_the_class_and_its_count(tmp_path):
    root = class_folder(tmp_path / "imgs", {"ant": 12, "bee": 7})
    (root / "bee" / "junk.png").write_text("x")  # skipped: does not count
    params = folder_params(root)
    with pytest.raises(folder_dataset.FolderError, match=r"'bee' has 7, needs 8"):
        preparation.prepare(params.data, 0, tmp_path / "tfds")
    assert not (tmp_path / "tfds").exists()  # nothing written half-way


@pytest.mark.parametrize(
    "make, keys, message",
    [
        (lambda r: r.mkdir(), {}, "no class folders"),
        (lambda r: class_folder(r, {"ant": 9}), {}, "single class"),
        (lambda r: class_folder(r, {"ant": 9, "bee": 9}), {"target_classes": ["ant", "owl"]},
         "no class named 'owl'"),
        (lambda r: None, {}, "is not a directory"),
    ],
)  # fmt: skip
def test_folder_errors_name_what_is_wrong(tmp_path, make, keys, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(ParamsError, match=message):
        folder_params(root, **keys)


def test_weights_source_needs_a_source_task(tmp_path):
    root = class_folder(tmp_path / "imgs", {"ant": 9, "bee": 9})
    raw = json.loads(json.dumps(TINY_PARAMS))
    raw["data"] = {"dataset": "folder", "folder": str(root)}
    with pytest.raises(ParamsError, match=r"backbones.small_cnn.weights.*imagenet.*model file"):
        parse_params(raw)
    raw["backbones"]["small_cnn"]["weights"] = "imagenet"
    with pytest.raises(ParamsError, match="small_cnn has no published ImageNet weights"):
        parse_params(raw)


def test_names_work_for_digits_and_ids_still_do():
    params = DataParams(source_classes=["0", "1"], target_classes=[2, 3])
    assert params.source_classes == [0, 1] and params.target_classes == [2, 3]
