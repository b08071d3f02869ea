"""The recommendation's files, one per format, and each file read back as a user would.

    model.keras        keras.models.load_model: uint8 RGB images of any size (export.build)
    saved_model/       tf.saved_model.load(...).serve: the same model, for TF Serving
    model.tflite       LiteRT, float32: pixel values 0..255 at the configuration's size
    model_int8.tflite  LiteRT, full-integer: uint8 pixels at that size, uint8 probabilities

The TFLite files are converted from `export.core`, the network without its resizing:
the antialiased resize and centre crop have no TFLite kernel, so their input is the
image as `prepare` (or `thaw predict`) resized it. The int8 file is calibrated on
training images; its input's quantisation is checked to be the identity on pixels.
A format that fails to convert is recorded with its reason (`write`), not dropped.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import quiet_tf

KERAS, SAVED_MODEL, TFLITE, TFLITE_INT8 = "keras", "saved_model", "tflite", "tflite_int8"
FILES = {KERAS: "model.keras", SAVED_MODEL: "saved_model", TFLITE: "model.tflite",
         TFLITE_INT8: "model_int8.tflite"}  # fmt: skip
# which images a format takes: as stored (any size), or already at the configuration's size
STORED, SIZED = "stored", "sized"
TAKES = {KERAS: STORED, SAVED_MODEL: STORED, TFLITE: SIZED, TFLITE_INT8: SIZED}
CALIBRATION_IMAGES = 200  # training images the int8 converter calibrates on, at most


def write(full, core, out: Path, calibration: np.ndarray) -> dict[str, str]:
    """Every format under `out`; returns {format: why it failed} for those that did."""
    failed: dict[str, str] = {}
    writers: dict[str, Callable[[], None]] = {
        KERAS: lambda: full.save(out / FILES[KERAS]),
        SAVED_MODEL: lambda: full.export(
            str(out / FILES[SAVED_MODEL]), format="tf_saved_model", verbose=False
        ),
    }
    for name, writer in writers.items():
        failed.update(_attempt(name, writer))
    with tempfile.TemporaryDirectory() as scratch:
        converted = _attempt("core", lambda: core.export(
            scratch, format="tf_saved_model", verbose=False))  # fmt: skip
        for name in (TFLITE, TFLITE_INT8):
            if converted:
                failed[name] = (
                    f"the network could not be exported for conversion: {converted['core']}"
                )
                continue
            failed.update(_attempt(name, lambda n=name: _convert(scratch, out / FILES[n], n,
                                                                 calibration)))  # fmt: skip
    return failed


def _attempt(name: str, writer: Callable[[], None]) -> dict[str, str]:
    try:
        writer()
    except Exception as exc:  # recorded with its reason; the other formats go on
        return {name: f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
    return {}


def _convert(saved: str, path: Path, name: str, calibration: np.ndarray) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    if name == TFLITE_INT8:
        images = calibration[:CALIBRATION_IMAGES].astype(np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([images[i : i + 1]] for i in range(len(images)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    with quiet_tf.filtered():
        blob = converter.convert()
    path.write_bytes(blob)
    if name == TFLITE_INT8:
        scale, zero = _interpreter(path, 1).get_input_details()[0]["quantization"]
        if not (np.isclose(scale, 1.0) and zero == 0):  # calibrated on pixels 0..255
            path.unlink()
            raise ValueError(f"input quantisation scale {scale}, zero point {zero}: not pixels")


def size_bytes(path: Path) -> int:
    """On disk: the file, or every file under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass
class Reader:
    """One file loaded back: `call(batch)` -> probabilities (float32), on the images the
    format takes (`TAKES`)."""

    name: str
    call: Callable[[np.ndarray], np.ndarray]

    def probabilities(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        return np.concatenate([self.call(images[i : i + batch])
                               for i in range(0, len(images), batch)])  # fmt: skip


def read(name: str, out: Path, threads: int) -> Reader:
    """The file of format `name` under `out`, as a user loads it."""
    path = out / FILES[name]
    if name == KERAS:
        import keras
        import tensorflow as tf

        model = keras.models.load_model(path)
        traced = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return Reader(name, lambda x: traced(tf.constant(x)).numpy())
    if name == SAVED_MODEL:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # held: its functions need its variables
        return Reader(name, lambda x: loaded.serve(tf.constant(x)).numpy())
    return Reader(name, _tflite_call(_interpreter(path, threads)))


def _interpreter(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    with quiet_tf.filtered():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()  # XNNPACK says it is on here: filtered
    return interpreter


def _tflite_call(interpreter) -> Callable[[np.ndarray], np.ndarray]:
    """LiteRT's interpreter as a batch function: resized to each new batch size, inputs
    cast to the file's type, uint8 outputs dequantised."""
    given, taken = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape: list[int] = []

    def call(x: np.ndarray) -> np.ndarray:
        if list(x.shape) != shape:
            interpreter.resize_tensor_input(given["index"], list(x.shape))
            interpreter.allocate_tensors()
            shape[:] = list(x.shape)
        interpreter.set_tensor(given["index"], x.astype(given["dtype"]))
        interpreter.invoke()
        found = interpreter.get_tensor(taken["index"])
        scale, zero = taken["quantization"]
        return (found.astype(np.float32) - zero) * scale if scale else found

    return call


def clean(out: Path) -> None:
    """An empty `out`: no file of an earlier export survives beside the new ones."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
