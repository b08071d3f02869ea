"""The instruction-set cap that makes a deterministic run's numbers the same on AVX2 and
AVX-512 CPUs: oneDNN must report AVX2 once a stage has configured the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from pipeline.train import devices
devices.configure(0, sys.argv[1] == "True")
import tensorflow as tf
x = tf.random.stateless_normal((2, 16, 16, 8), seed=(1, 2))
tf.nn.conv2d(x, tf.ones((3, 3, 8, 4)), 1, "SAME").numpy()
"""


def cpu_flags() -> set[str]:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    return {f for line in lines if line.startswith("flags") for f in line.split()}


def onednn_isa(deterministic: bool, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    environ.update(ONEDNN_VERBOSE="1", **env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(deterministic)], cwd=ROOT, env=environ,
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return next(line for line in out.splitlines() if ",info,cpu,isa:" in line).split("isa:")[1]


@pytest.mark.skipif("avx2" not in cpu_flags(), reason="oneDNN caps at AVX2 only on x86 with AVX2")
def test_a_deterministic_run_caps_onednn_at_avx2_and_a_users_setting_wins():
    assert onednn_isa(True) == "Intel AVX2"
    assert onednn_isa(True, ONEDNN_MAX_CPU_ISA="SSE41") == "Intel SSE4.1"
    if "avx512f" in cpu_flags():  # without the cap the machine's own set shows
        assert "AVX-512" in onednn_isa(False)
