"""Where a cold `dvc repro` spends its time: each stage's seconds and share.

    python -m benchmarks.repro_stages [--clone DIR] [--keep]

Clones this repository (its committed HEAD) into a fresh folder, runs `dvc repro`
there with nothing cached, and timestamps each "Running stage" line as DVC
prints it. Prints one row per stage (seconds, share of the whole run) and the
total wall time. Run it twice to see the run-to-run spread; the clone is
removed afterwards unless `--keep`, so `--keep` twice gives two clones whose
results can be compared (`trials.csv`, `reports/metrics.json`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.child_processes import timestamped_lines

ROOT = Path(__file__).resolve().parents[1]
STARTS = "Running stage '"  # how DVC announces a stage


def timed_repro(folder: Path) -> tuple[list[tuple[str, float]], float, str]:
    """(stage, seconds) in the order run, the total, and DVC's output."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    timed_lines, code = timestamped_lines(["dvc", "repro"], folder, env)
    end = time.perf_counter()
    lines = [line for line, _ in timed_lines]
    marks = [(line.split("'")[1], at) for line, at in timed_lines if line.startswith(STARTS)]
    if code != 0:
        sys.exit(f"dvc repro failed ({code}):\n{''.join(lines[-40:])}")
    bounds = [t for _, t in marks[1:]] + [end]
    stages = [(name, stop - begin) for (name, begin), stop in zip(marks, bounds)]
    return stages, end - start, "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--clone", type=Path, help="clone into this folder (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its results")
    args = parser.parse_args()
    folder = args.clone or Path(tempfile.mkdtemp(prefix="thaw-repro-")) / "thaw"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(folder)], check=True)
    try:
        stages, total, _ = timed_repro(folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    width = max(len(name) for name, _ in stages)
    print(f"{'stage':<{width}}  seconds  share")
    for name, seconds in stages:
        print(f"{name:<{width}}  {seconds:7.1f}  {seconds / total:5.1%}")
    print(f"{'total (wall)':<{width}}  {total:7.1f}")
    if args.keep:
        print(f"clone kept at {folder}")


if __name__ == "__main__":
    main()
