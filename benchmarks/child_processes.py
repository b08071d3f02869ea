"""Running a benchmark's child processes: a measurement in a fresh Python process read
back as JSON, a stage timed from outside, its peak memory under GNU time, a tool's output
line by line as it comes, a worker that talks over stdin and stdout.

Why processes: TensorFlow fixes its thread pools and oneDNN its instruction set when they
start, op determinism cannot be switched off once on, and a stage's time and memory are
those of the process `dvc repro` would start; so each setting or stage gets its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GNU_TIME = "/usr/bin/time"  # `-f "%M %e"`: peak resident KiB and wall seconds
TAIL = 3000  # characters of a failed child's stderr worth showing


def python_module(module: str, *args: str) -> list[str]:
    """The command for `python -m module args` with this interpreter (this venv's)."""
    return [sys.executable, "-m", module, *args]


def quiet_env(**extra: str) -> dict[str, str]:
    """This process's environment with TensorFlow's C++ logs off and `extra` set
    (`ONEDNN_MAX_CPU_ISA=AVX2`, say): a child's own settings, fixed before it starts."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def measure_in_fresh_process(module: str, args: list[str], **env: str) -> dict:
    """Run `python -m module args` from the project root in a fresh process with
    `quiet_env(**env)`; its last stdout line, as JSON. Exits with its stderr's tail
    if it fails."""
    proc = subprocess.run(
        python_module(module, *args), cwd=ROOT, env=quiet_env(**env), capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(proc.stderr[-TAIL:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed(command: list[str], cwd: Path, what: str) -> float:
    """Wall-clock seconds of `command` in `cwd`, its output captured. Exits with
    "`what` failed:" and its stderr's tail if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{what} failed:\n{proc.stderr[-TAIL:]}")
    return time.perf_counter() - start


def peak_memory(command: list[str], cwd: Path, log: Path, what: str) -> tuple[float, int]:
    """(wall seconds, peak resident bytes) of `command` in `cwd` under GNU time; its stdout
    and stderr go to `log`, GNU time's figures beside it (`.time`). Exits with "`what`
    failed" and the log's tail if it fails."""
    figures = log.with_suffix(".time")
    with open(log, "w") as out:
        code = subprocess.call(
            [GNU_TIME, "-f", "%M %e", "-o", str(figures), *command],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if code:
        raise SystemExit(f"{what} failed ({code}) in {cwd}:\n{log.read_text()[-2000:]}")
    kib, seconds = figures.read_text().split()[-2:]
    return float(seconds), int(kib) * 1024


def timestamped_lines(
    command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[list[tuple[str, float]], int]:
    """Run `command` in `cwd`, stdout and stderr together; ([(line, time.perf_counter()
    when it arrived)], exit code)."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = [(line, time.perf_counter()) for line in proc.stdout]
    return lines, proc.wait()


def start_talking(module: str, *args: str) -> subprocess.Popen:
    """Start `python -m module args` from the project root, its stdin and stdout pipes of
    text: for a worker that says when it is ready and waits to be told to go."""
    return subprocess.Popen(
        python_module(module, *args),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
