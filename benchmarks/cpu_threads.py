"""Intra-op threads for a trial's train step on a CPU, measured side by side.

    python -m benchmarks.cpu_threads [--backbones small_cnn mobilenet_v2] [--repeats 3]

Run from the project root after `dvc repro`. TensorFlow fixes its thread pools when
its runtime starts, so each setting runs in a fresh process: intra-op threads 1
(what `devices.tune_threads` sets on a CPU) against TensorFlow's default (one per
core), inter-op threads left at the default. Each process (`train_step_seconds`)
times 80 train steps of batch 16 (step_compile's measurement, Grappler off as the
stages run it) per backbone, `--repeats` times, alternating settings; prints medians
and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks.child_processes import measure_in_fresh_process


def measure(threads: int, backbones: list[str]) -> dict:
    args = ["--threads", str(threads), *backbones]
    return measure_in_fresh_process("benchmarks.train_step_seconds", args)


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
