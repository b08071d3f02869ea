"""The exported model: the backbone and head as trained, behind the resizing and
preprocessing the training data had, so it takes the stored images as they are; the
converged probe folded into one Dense layer; every file format read back as a user would."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import datasets
from pipeline.screen import scores
from pipeline.train import context
from pipeline.winner import export, formats
from tests.search.test_searched_inputs import reprepare, searched


def test_an_exported_model_at_a_smaller_size_resizes_as_the_training_data_was(workspace):
    params = searched()
    manifest = reprepare(params)
    ctx = context.load_context("small_cnn", params, manifest, ("train", "test"), size=12)
    head = ctx.pool.head(8, 0.0, seed=1)
    trained_path = ctx.pool.model(0, head)
    model = export.build(ctx.backbone, export.head_layers(head), ctx.meta, manifest)
    stored = datasets.load_target_splits(manifest, ("test",))["test"].images  # uint8, 16 px
    served = model.predict(stored, verbose=0)
    expected = trained_path.predict(np.asarray(ctx.splits["test"][0]), verbose=0)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    # the TFLite core: the same network from pixels already at 12 px
    core = export.core(ctx.backbone, export.head_layers(head), ctx.meta, manifest)
    small = np.asarray(datasets.load_target_splits(manifest, ("test",), 12)["test"].images)
    np.testing.assert_allclose(core.predict(small.astype(np.float32), verbose=0), expected,
                               atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("classes", [2, 4])
def test_the_probe_folded_into_a_dense_layer_gives_its_probabilities(classes):
    """Standardising is affine, so it folds into the kernel and bias; a two-class
    regression (one row of coefficients) becomes the softmax of (0, log-odds)."""
    import keras

    rng = np.random.default_rng(classes)
    x = rng.normal(3.0, [0.5, 2.0, 8.0, 1.0, 0.1, 4.0], (120, 6)).astype(np.float32)
    y = rng.integers(0, classes, 120)
    fit = scores.fit_probe(x, y, c=1.0)
    (dense,) = export.probe_layers(fit)
    layer = keras.layers.Dense(classes, "softmax")
    layer.build((None, 6))
    layer.set_weights([dense.kernel, dense.bias])
    np.testing.assert_allclose(np.asarray(layer(x)), fit.predict_proba(x), atol=1e-5)


def test_every_format_reads_back_with_the_models_predictions(workspace, tmp_path):
    """model.keras and saved_model/ take the stored images, the TFLite files the images at
    the configuration's size; float32 files predict as the Keras model does, the int8
    file's input is the pixels themselves (scale 1, zero point 0)."""
    params = searched()
    manifest = reprepare(params)
    ctx = context.load_context("small_cnn", params, manifest, ("train", "test"), size=12)
    head = export.head_layers(ctx.pool.head(0, 0.0, seed=1))
    full = export.build(ctx.backbone, head, ctx.meta, manifest)
    core = export.core(ctx.backbone, head, ctx.meta, manifest)
    sized = datasets.load_target_splits(manifest, ("train", "test"), 12)
    assert formats.write(full, core, tmp_path, np.asarray(sized["train"].images)) == {}
    stored = np.asarray(datasets.load_target_splits(manifest, ("test",))["test"].images)
    images = {formats.STORED: stored, formats.SIZED: np.asarray(sized["test"].images)}
    expected = full.predict(stored, verbose=0)
    for name in formats.FILES:
        found = formats.read(name, tmp_path, 1).probabilities(images[formats.TAKES[name]])
        if name == formats.TFLITE_INT8:  # 8-bit weights and activations: close, not equal
            assert np.abs(found - expected).max() < 0.1
            assert np.mean(found.argmax(1) == expected.argmax(1)) > 0.9
        else:
            np.testing.assert_allclose(found, expected, atol=1e-5, err_msg=name)
    interpreter = formats._interpreter(tmp_path / formats.FILES[formats.TFLITE_INT8], 1)
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"] == np.uint8 and detail["quantization"] == (1.0, 0)


def test_a_format_that_cannot_convert_is_reported_with_its_reason(workspace, tmp_path):
    params = searched()
    manifest = reprepare(params)
    ctx = context.load_context("small_cnn", params, manifest, ("train",), size=12)
    head = export.head_layers(ctx.pool.head(0, 0.0, seed=1))
    full = export.build(ctx.backbone, head, ctx.meta, manifest)
    core = export.core(ctx.backbone, head, ctx.meta, manifest)
    wrong = np.zeros((4, 16, 16, 3), np.uint8)  # calibration images of another size
    failed = formats.write(full, core, tmp_path, wrong)
    assert list(failed) == [formats.TFLITE_INT8] and failed[formats.TFLITE_INT8]
    assert (tmp_path / "model.keras").is_file() and (tmp_path / "model.tflite").is_file()
    assert not (tmp_path / "model_int8.tflite").exists()
