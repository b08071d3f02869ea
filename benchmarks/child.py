"""A benchmark's measurement in a fresh Python process: TensorFlow fixes its thread pools
and oneDNN its instruction set when they start, so each setting needs its own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_child(code: str, args: list[str], **env: str) -> dict:
    """Run `code` with `args` from the project root; its last stdout line, as JSON."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT), **env)
    proc = subprocess.run([sys.executable, "-c", code, *args],
                          cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])
