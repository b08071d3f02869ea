"""Each exported file tested as a user loads it: its test accuracy measured on the file,
and how far it agrees with the pipeline (the final stage's per-image results) and with
model.keras (the predicted class per image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.train import devices, loop
from pipeline.winner import formats


def test_files(out: Path, failed: dict[str, str], images: dict[str, np.ndarray],
               labels: np.ndarray, final_bits: str) -> dict[str, dict]:  # fmt: skip
    """{format: scores or the reason it has none}. `images`: the test split as each
    format takes it (formats.TAKES: as stored, or at the configuration's size)."""
    found: dict[str, dict] = {}
    reference = None  # model.keras's predicted classes
    for name, file in formats.FILES.items():
        if name in failed:
            found[name] = {"file": file, "error": failed[name]}
            continue
        try:
            reader = formats.read(name, out, devices.cores())
            predicted = np.argmax(reader.probabilities(images[formats.TAKES[name]]), axis=1)
        except Exception as exc:  # a file that saves but cannot be read back is reported
            found[name] = {"file": file, "error": f"reading it back: {type(exc).__name__}: {exc}"}
            continue
        reference = predicted if reference is None else reference
        found[name] = {"file": file, "bytes": formats.size_bytes(out / file),
                       **scores(predicted, labels, final_bits, reference)}  # fmt: skip
    return found


def scores(predicted: np.ndarray, labels: np.ndarray, final_bits: str, reference) -> dict:
    hits = predicted == labels
    final = np.frombuffer(final_bits.encode(), np.uint8) == ord("1")
    same = int(np.sum(hits == final)) if len(final) == len(hits) else 0
    return {
        "test_accuracy": float(np.mean(hits)),
        "test_balanced_accuracy": loop.balanced_accuracy(predicted, labels),
        "correct": int(np.sum(hits)),
        "examples": int(len(labels)),
        "same_as_final": same,  # images scored right or wrong as the final stage's run did
        "agrees_with_keras": float(np.mean(predicted == reference)),
    }
