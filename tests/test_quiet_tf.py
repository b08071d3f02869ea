"""TensorFlow's start-up chatter is dropped; its real messages and the user's switch stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline import quiet_tf

ROOT = Path(__file__).resolve().parents[1]
LOAD = "from pipeline import quiet_tf; quiet_tf.load(); print('loaded')"


def stderr_of(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    done = subprocess.run(
        [sys.executable, "-c", LOAD], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr
    return done.stderr


def test_start_up_noise_is_gone_unless_asked_for():
    loud = stderr_of(THAW_TF_LOGS="1")
    assert "oneDNN custom operations are on" in loud  # this machine does print it
    quiet = stderr_of()
    for line in quiet_tf.NOISE:
        assert line not in quiet, quiet


def test_a_real_warning_survives_the_filter():
    text = (
        "I0000 00:00:1 port.cc:153] oneDNN custom operations are on. You may see\n"
        "W0000 00:00:2 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n"
        "E0000 00:00:3 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
    )
    assert (
        quiet_tf.keep(text)
        == "W0000 00:00:2 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n"
    )
