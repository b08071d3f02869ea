"""Intra-op threads for a trial's train step on a CPU, measured side by side.

    python benchmarks/cpu_threads.py [--backbones small_cnn mobilenet_v2] [--repeats 3]

Run from the project root after `dvc repro`. TensorFlow fixes its thread pools when
its runtime starts, so each setting runs in a fresh process: intra-op threads 1
(what `devices.tune_threads` sets on a CPU) against TensorFlow's default (one per
core), inter-op threads left at the default. Each process times 80 train steps of
batch 16 (step_compile.py's measurement, Grappler off as the stages run it) per
backbone, `--repeats` times, alternating settings; prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics

from child import run_child

CHILD = """
import json, sys
import keras, tensorflow as tf
threads = int(sys.argv[1])
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
sys.path.insert(0, "benchmarks")
from step_compile import MODELS_DIR, time_step
out = {}
for name in sys.argv[2:]:
    backbone = keras.models.load_model(MODELS_DIR / name / "backbone.keras", compile=False)
    time_step(backbone, False, False)  # warm: the first run also builds the model
    out[name] = time_step(backbone, False, False)[1]
print(json.dumps(out))
"""


def measure(threads: int, backbones: list[str]) -> dict:
    return run_child(CHILD, [str(threads), *backbones])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["small_cnn", "mobilenet_v2"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {1: [], 0: []}
    for _ in range(args.repeats):
        for threads in runs:
            runs[threads].append(measure(threads, args.backbones))
    print(f"80 train steps, batch 16, {os.cpu_count()} cores; medians of {args.repeats} processes")
    print(f"{'backbone':>13} | 1 intra-op thread s | default s | default / 1")
    for name in args.backbones:
        one = statistics.median(r[name] for r in runs[1])
        default = statistics.median(r[name] for r in runs[0])
        print(f"{name:>13} | {one:19.2f} | {default:9.2f} | {default / one:.2f}")


if __name__ == "__main__":
    main()
