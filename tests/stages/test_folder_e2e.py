"""Your own images in, the winning model out: a generated folder through `dvc repro`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.image_folders import split_folder
from tests.stages.test_pipeline_e2e import copy_project, repro_from_nothing, sh, tiny_sweep_params

pytestmark = pytest.mark.slow

SOURCE = {"ant": 16, "bee": 16, "cat": 16}
TRAIN = {"dog": 9, "eel": 9, "fox": 9}
TEST = {"dog": 24, "eel": 8, "fox": 8}  # dog has 3x the others: balanced accuracy is reported


def tiny_model_file(path: Path, seed: int) -> None:
    """A small functional CNN saved as .keras: a backbone with weights from a file."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, x, name="filenet").save(path)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = copy_project(tmp_path_factory.mktemp("folder_project"))
    split_folder(folder / "photos", {**SOURCE, **TRAIN}, {**TEST})
    tiny_model_file(folder / "nets" / "filenet.keras", seed=1)
    params = tiny_sweep_params()
    params["data"] = {"dataset": "folder", "folder": "photos", "image_size": 16,
                      "source_classes": ["ant", "bee", "cat"],
                      "target_classes": ["dog", "eel", "fox"],
                      "train_per_class": 4, "val_per_class": 4}  # fmt: skip
    params["backbones"]["filenet"] = {"weights": "nets/filenet.keras"}
    (folder / "repro.log").write_text(repro_from_nothing(folder, params))
    return folder


def test_the_report_names_the_classes_and_counts_what_was_skipped(project):
    log = (project / "repro.log").read_text()
    assert "train/dog/broken.jpg: cannot be decoded" in log
    assert "train/dog/notes.txt: not an image file" in log
    assert "leakage" in log  # the eel image copied into test/
    report = (project / "reports" / "report.md").read_text()
    assert "dog (3), eel (4), fox (5)" in report and "ant (0), bee (1), cat (2)" in report
    assert "**2 file(s) skipped**" in report and "1 image(s) with identical bytes" in report
    assert "| dog " in report  # images per class and split
    assert "balanced accuracy" in report
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert 0 <= metrics["small_cnn"]["balanced_accuracy"] <= 1
    manifest = json.loads((project / "data" / "manifest.json").read_text())
    assert manifest["counts"]["test"] == {"dog": 24, "eel": 9, "fox": 8}


FRESH = """
import json, sys
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
images, labels = np.load(sys.argv[2]), np.load(sys.argv[3])
found = np.argmax(model.predict(images, batch_size=256, verbose=0), axis=-1)
assert not any(m.startswith("pipeline") for m in sys.modules), "Thaw was imported"
import tensorflow as tf  # the SavedModel beside it serves the same probabilities
loaded = tf.saved_model.load(sys.argv[4])  # kept: its variables live as long as it does
served = loaded.serve(tf.constant(images[:8])).numpy()
assert np.allclose(served, model.predict(images[:8], verbose=0), atol=1e-5)
print(json.dumps({"accuracy": float(np.mean(found == labels))}))
"""


def test_the_exported_model_reproduces_its_card_in_a_fresh_process(project, tmp_path):
    """models/recommended/ holds the report's recommendation, retrained as the final stage
    tested it: the same images right and wrong in every float file, measured on the file
    (here and again in a process that imports nothing of Thaw's)."""
    from pipeline.data import datasets

    best = project / "models" / "recommended"
    card = json.loads((best / "card.json").read_text())
    assert card["classes"] == ["dog", "eel", "fox"]
    assert (best / "saved_model" / "saved_model.pb").is_file() and (best / "card.md").is_file()
    report = (project / "reports" / "report.md").read_text()
    assert "### The files: models/recommended/" in report  # the report names this export
    assert card["reproduced"] == {"differing_test_images": 0, "examples": 41}
    files = card["files"]
    assert set(files) == {"keras", "saved_model", "tflite", "tflite_int8"}
    final = card["final_stage"]["test_accuracy"]
    for name in ("keras", "saved_model", "tflite"):
        assert files[name]["test_accuracy"] == final and files[name]["same_as_final"] == 41
    assert "test_accuracy" in files["tflite_int8"] or files["tflite_int8"]["error"]
    for name in ("keras", "tflite"):
        assert files[name]["latency_b1"]["median_ms"] > 0 and files[name]["bytes"] > 0
    manifest = json.loads((project / "data" / "manifest.json").read_text())
    manifest["data_dir"] = str(project / manifest["data_dir"])
    test = datasets.load_splits(manifest, ("test",))["test"]
    np.save(tmp_path / "x.npy", test.images)
    np.save(tmp_path / "y.npy", test.labels)
    (tmp_path / "fresh.py").write_text(FRESH)
    out = sh(
        [sys.executable, str(tmp_path / "fresh.py"), str(best / "model.keras"),
         str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), str(best / "saved_model")],
        tmp_path, stdout_only=True,
    )  # fmt: skip
    assert json.loads(out.strip().splitlines()[-1])["accuracy"] == final
    assert len(test.labels) == 41

    # `thaw predict` on the same images as files agrees with the card
    folder = tmp_path / "to_classify"
    folder.mkdir()
    for i, (image, label) in enumerate(zip(test.images, test.labels)):
        Image.fromarray(image).save(folder / f"{i:03d}_{card['classes'][label]}.png")
    (folder / "readme.txt").write_text("not an image")
    thaw = str(Path(sys.executable).parent / "thaw")
    proc = subprocess.run([thaw, "predict", str(folder), "--csv"], cwd=project,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "readme.txt" in proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 41 and set(rows[0]) >= {"path", "predicted", "dog", "eel", "fox"}
    right = [Path(r["path"]).stem.split("_", 1)[1] == r["predicted"] for r in rows]
    assert np.mean(right) == final
    text = sh([thaw, "predict", str(folder / "000_dog.png")], project, True)
    assert text.startswith(f"{folder / '000_dog.png'}: ") and text.count(",") == 2  # top 3


def test_a_replaced_model_file_reruns_only_its_backbone(project):
    assert "Data and pipelines are up to date" not in sh(["dvc", "status"], project)
    again = sh(["dvc", "repro"], project)
    assert "Running stage 'backbone@" not in again and "Running stage 'prepare'" not in again
    tiny_model_file(project / "nets" / "filenet.keras", seed=2)  # new weights, same name
    out = sh(["dvc", "repro"], project)
    assert "Running stage 'backbone@filenet'" in out and "Running stage 'final@filenet'" in out
    assert "Running stage 'backbone@small_cnn'" not in out
    assert "Running stage 'sweep@small_cnn'" not in out and "Running stage 'prepare'" not in out


def test_a_new_image_reruns_prepare(project):
    photo = np.full((20, 20, 3), 200, np.uint8)
    Image.fromarray(photo).save(project / "photos" / "test" / "fox" / "new.png")
    status = sh(["dvc", "status"], project, stdout_only=True)
    assert "prepare" in status and "modified:           photos" in status
