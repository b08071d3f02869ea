"""What TensorFlow's op determinism costs, and whether runs repeat without it.

    python -m benchmarks.determinism [--backbone small_cnn] [--trials 12] [--repeats 3]

Run from the project root after `dvc repro` (it reads data/ and models/). Each
measurement is a fresh process (op determinism is process-wide and cannot be
switched off once on), alternating `deterministic: true` and `false`, so both
settings see the same machine state. A process (`pretrain_then_sweep`) pretrains the
backbone as the `backbone` stage does (not saved) and runs a sweep of `--trials` trials
in an in-memory study with params.yaml's search space. Prints the median seconds of
each part per setting, their ratio, and whether the repeats of each setting gave
bit-identical weights and trial values.
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks.child_processes import measure_in_fresh_process


def measure(name: str, trials: int, deterministic: bool) -> dict:
    flag = ["--deterministic"] if deterministic else []
    return measure_in_fresh_process("benchmarks.pretrain_then_sweep", [name, str(trials), *flag])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(args.repeats):
        for deterministic in (True, False):
            runs[deterministic].append(measure(args.backbone, args.trials, deterministic))
    print(f"{args.backbone}: pretraining, then {args.trials} sweep trials; medians of "
          f"{args.repeats} fresh processes per setting")  # fmt: skip
    for part in ("pretrain", "sweep"):
        on = statistics.median(r[part] for r in runs[True])
        off = statistics.median(r[part] for r in runs[False])
        print(f"  {part:<8} deterministic {on:6.2f} s  not {off:6.2f} s  ratio {on / off:.2f}")
    for deterministic, label in ((True, "deterministic"), (False, "not deterministic")):
        same_weights = len({r["weights"] for r in runs[deterministic]}) == 1
        same_values = all(
            r["values"] == runs[deterministic][0]["values"] for r in runs[deterministic]
        )
        print(f"  {label}: repeats identical: weights {same_weights}, trial values {same_values}")


if __name__ == "__main__":
    main()
