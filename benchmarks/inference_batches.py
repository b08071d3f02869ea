"""Inference batches one after another against side by side on the cores, in one run.

    python -m benchmarks.inference_batches [--backbones mobilenet_025 mobilenet_v2]

Run from the project root after `dvc repro`. With one intra-op thread per op, as the
stages run (`devices.tune_threads`), a forward pass keeps one core busy;
`devices.side_by_side` runs one batch per core. Per backbone, at its stored input
size: 256 random images in batches of 64 (the activation cache's batch), `--repeats`
times each way, alternating; prints medians, the ratio, and whether the outputs are
bit-identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_025", "mobilenet_v2"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from pipeline.train import devices

    devices.tune_threads()
    print(f"{devices.cores()} cores, one intra-op thread; 256 images, batches of {BATCH}; "
          f"medians of {args.repeats}")  # fmt: skip
    print(f"{'backbone':>13} | one after another s | side by side s | ratio | identical")
    for name in args.backbones:
        path = ROOT / "models" / name / "backbone.keras"
        backbone = keras.models.load_model(path, compile=False)
        shape = backbone.input_shape[1:]
        spec = [tf.TensorSpec((None, *shape), tf.float32)]
        forward = tf.function(lambda x: backbone(x, training=False), input_signature=spec)
        x = np.random.default_rng(0).random((256, *shape), np.float32)
        starts = range(0, len(x), BATCH)

        def one_batch(i: int) -> np.ndarray:
            return forward(x[i : i + BATCH]).numpy()

        def sequential() -> list[np.ndarray]:
            return [one_batch(i) for i in starts]

        def parallel() -> list[np.ndarray]:
            return devices.side_by_side(one_batch, starts)

        sequential()  # warm: tracing and oneDNN's first primitives
        seconds: dict[str, list[float]] = {"sequential": [], "parallel": []}
        outputs = {}
        for _ in range(args.repeats):
            for way, run in (("sequential", sequential), ("parallel", parallel)):
                start = time.perf_counter()
                outputs[way] = run()
                seconds[way].append(time.perf_counter() - start)
        one, side = (statistics.median(seconds[w]) for w in ("sequential", "parallel"))
        same = all(np.array_equal(a, b) for a, b in zip(outputs["sequential"], outputs["parallel"]))
        print(f"{name:>13} | {one:19.2f} | {side:14.2f} | {one / side:5.2f} | {same}")


if __name__ == "__main__":
    main()
