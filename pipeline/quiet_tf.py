"""TensorFlow without its start-up chatter, and with its real warnings.

TensorFlow 2.21 writes, from C++ and before its log level is read, lines such as
"oneDNN custom operations are on", "Could not find cuda drivers" and "failed call
to cuInit" (twice: two libraries start). On a CPU machine they are noise that reads
like an error, and `TF_CPP_MIN_LOG_LEVEL` does not silence them. `load()` imports
TensorFlow and lists its devices with the process's stderr caught, then writes back
every line that is not one of those: a real warning or error still shows.

`THAW_TF_LOGS=1`, or your own `TF_CPP_MIN_LOG_LEVEL` of 0 or 1, keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

NOISE = (  # start-up lines that say nothing about this run's correctness
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "TF-TRT Warning: Could not find TensorRT",
    "computation placer already registered",
    # the TFLite converter and LiteRT's interpreter (winner/formats.py): progress, not news
    "fully_quantize: ",
    "Created TensorFlow Lite XNNPACK delegate",
    "Ignored output_format.",
    "Ignored drop_control_dependency.",
    "Reading SavedModel from:",
    "Reading meta graph with tags",
    "Reading SavedModel debug info",
    "Restoring SavedModel bundle.",
    "Running initialization op on SavedModel bundle",
    "SavedModel load for tags",
    "disabling MLIR crash reproducer",
    "MLIR V1 optimization pass is not enabled",
    "Estimated count of arithmetic ops",
)


def wanted() -> bool:
    """True when the user asked for TensorFlow's own start-up logs."""
    return os.environ.get("THAW_TF_LOGS") == "1" or os.environ.get("TF_CPP_MIN_LOG_LEVEL") in (
        "0",
        "1",
    )


def keep(text: str) -> str:
    """`text` without the start-up noise lines."""
    lines = text.splitlines(keepends=True)
    return "".join(line for line in lines if not any(n in line for n in NOISE))


def load():
    """Import TensorFlow (once per process) quietly; returns the module."""
    if "tensorflow" in sys.modules or wanted():
        import tensorflow as tf

        return tf
    with filtered():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe writes its lines now
    return tf


@contextlib.contextmanager
def filtered():
    """The process's stderr (C++ writes included) caught while the block runs, then written
    back without the NOISE lines."""
    if wanted():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            sys.stderr.write(keep(caught.read().decode(errors="replace")))
            sys.stderr.flush()
