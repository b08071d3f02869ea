"""What capping oneDNN at AVX2 costs (`deterministic: true` does it), measured side by side.

    python -m benchmarks.cpu_isa [--backbones mobilenet_025 mobilenet_v2] [--repeats 3]

Run from the project root after `dvc repro`. oneDNN picks its kernels from the CPU's
instruction set at its first primitive, so each setting runs in a fresh process: the
machine's own set (ONEDNN_MAX_CPU_ISA=ALL) against the AVX2 cap that
`devices.pin_cpu_isa` sets. Each process (`train_step_seconds`), with one intra-op
thread as the stages run, times 80 train steps of batch 16 (step_compile's
measurement) and a forward pass over 256 images (what the activation cache does) per
backbone, at the backbone's stored input size, `--repeats` times, alternating
settings; prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics

from benchmarks.child_processes import measure_in_fresh_process


def measure(isa: str, backbones: list[str]) -> dict:
    args = ["--threads", "1", "--forward", *backbones]
    return measure_in_fresh_process("benchmarks.train_step_seconds", args, ONEDNN_MAX_CPU_ISA=isa)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_025", "mobilenet_v2"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"ALL": [], "AVX2": []}
    for _ in range(args.repeats):
        for isa in runs:
            runs[isa].append(measure(isa, args.backbones))
    print(f"{os.cpu_count()} cores, one intra-op thread; medians of {args.repeats} processes")
    print(f"{'backbone':>13} | {'what':>22} | native s | AVX2 s | AVX2 / native")
    for name in args.backbones:
        for index, what in enumerate(("80 train steps, batch 16", "forward, 256 images")):
            native = statistics.median(r[name][index] for r in runs["ALL"])
            capped = statistics.median(r[name][index] for r in runs["AVX2"])
            print(
                f"{name:>13} | {what:>22} | {native:8.2f} | {capped:6.2f} | {capped / native:.2f}"
            )


if __name__ == "__main__":
    main()
