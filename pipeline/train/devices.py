"""Which device trains, by name, and how to wait for it before reading a clock."""

from __future__ import annotations

import functools
import os
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Device:
    kind: str  # "GPU" or "CPU": the report labels device time accordingly
    name: str


@functools.cache
def current() -> Device:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return Device("GPU", details.get("device_name", gpus[0].name))
    return Device("CPU", _cpu_name())


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def configure(seed: int, deterministic: bool) -> None:
    """Every stage that trains, before TensorFlow's first op: instruction set, threads,
    graph optimiser, seeds."""
    if deterministic:
        pin_cpu_isa()
    tune_threads()
    tune_graph_optimizer()
    make_reproducible(seed, deterministic)


ISA = "AVX2"


def pin_cpu_isa() -> str:
    """Cap oneDNN's kernels at AVX2, so an AVX-512 CPU sums in the same order as an AVX2
    one: oneDNN picks its kernels at run time from the CPU's instruction set, and an
    AVX-512 kernel rounds differently (seen here: the default sweep's linear baseline
    chose another rate). oneDNN reads the variable at its first primitive, so this works
    until TensorFlow's first op. A user's own ONEDNN_MAX_CPU_ISA wins. Returns the cap."""
    return os.environ.setdefault("ONEDNN_MAX_CPU_ISA", ISA)


def make_reproducible(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, deterministic kernels too.

    With op determinism TensorFlow picks a deterministic implementation of every
    op, or raises for an op that has none, instead of silently varying (on a GPU,
    atomics-based reductions and some cuDNN algorithms). Same seed, same numbers.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def synchronize(model) -> None:
    """Block until queued device work is done: reading a weight back to the host waits."""
    if model.weights:
        model.weights[0].numpy()


def tune_graph_optimizer() -> bool:
    """Skip Grappler's graph rewrites on a CPU; keep them on a GPU. Returns True if skipped.

    A trial traces a step and runs it for seconds. On 2 CPU cores, Grappler's
    rewrites made MobileNetV2's first train step take 1.65 s instead of 1.12 s
    and its first inference pass 0.42 s instead of 0.29 s, with no measurable
    gain per step after; on a GPU its layout and fusion passes pay for themselves.
    """
    import tensorflow as tf

    skip = current().kind == "CPU"
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": skip})
    return skip


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def side_by_side(run: Callable[[int], T], starts: range) -> list[T]:
    """`run(start)` for every batch start, one Python thread per core, results in order.

    With one intra-op thread per op (`tune_threads`) a forward pass uses one core; two
    batches at once use two. MobileNetV2 at 224 px, 256 images in batches of 64: 5.7 s
    one after the other, 3.0 s side by side on 2 cores, bit-identical outputs (each
    batch is computed as before; only when it runs changes).
    """
    workers = min(cores(), len(starts))
    if workers <= 1:
        return [run(start) for start in starts]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, starts))


def tune_threads() -> bool:
    """On a CPU, one thread per op and ops side by side; returns True if set.

    A trial's ops are small (MobileNetV2 at 32 px: thousands of tiny kernels a step),
    so splitting each across cores costs more in synchronisation than it saves. On 2
    cores, 80 MobileNetV2 train steps took 1.10 s with one intra-op thread against
    1.93 s with two (small_cnn 0.62 s against 0.67 s; `benchmarks/cpu_threads.py`).
    Must run before TensorFlow's first op; later calls leave the setting as it is.
    """
    import tensorflow as tf

    if current().kind != "CPU":
        return False
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # the runtime already started (a second stage in one process)
        return False
    return True
