"""What a model costs to run: median milliseconds per image at batch 1 and 32, measured on
the files as saved, in a process of its own.

The process is a user's: TensorFlow with its default threads and kernels, not a stage's
settings (one intra-op thread, op determinism, oneDNN capped at AVX2: choices for the
same numbers everywhere, not for speed), and LiteRT's interpreter with one thread per
core. Each (file, batch) gets warm-up calls, then `REPEATS` timed calls on the same
batch; the median per image is the figure, the fastest and slowest repeat its spread.
Latency depends on the architecture and input size only, not on the weights' values.

    python -m pipeline.winner.latency < jobs.json    (a list of `Job`s; prints the rows)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BATCHES = (1, 32)
WARMUP = {1: 3, 32: 2}
REPEATS = {1: 20, 32: 5}


@dataclass(frozen=True)
class Job:
    key: str  # who asked: a candidate's label, or the recommendation
    format: str  # formats.FILES key
    folder: str  # where the file is (formats.FILES names it)
    size: int  # the image side the format takes (formats.TAKES)


def measure(jobs: list[Job]) -> list[dict]:
    """Every job at every batch size, in a fresh process (`main`); one row per pair."""
    if not jobs:
        return []
    done = subprocess.run(
        [sys.executable, "-m", __name__],
        input=json.dumps([asdict(j) for j in jobs]),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        from pipeline.errors import ThawError

        raise ThawError(f"measuring latency failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(call, batch: np.ndarray) -> dict:
    """Median, fastest and slowest milliseconds per image over the repeats, after warm-up."""
    n = len(batch)
    for _ in range(WARMUP[n]):
        call(batch)
    seconds = []
    for _ in range(REPEATS[n]):
        start = time.perf_counter()
        call(batch)
        seconds.append(time.perf_counter() - start)
    per_image = np.array(seconds) * 1000 / n
    return {"batch": n, "median_ms": float(np.median(per_image)), "min_ms": float(per_image.min()),
            "max_ms": float(per_image.max()), "repeats": REPEATS[n]}  # fmt: skip


def main() -> None:
    from pipeline import quiet_tf
    from pipeline.train import devices
    from pipeline.winner import formats

    quiet_tf.load()
    jobs = [Job(**j) for j in json.loads(sys.stdin.read())]
    rows, rng = [], np.random.default_rng(0)
    for job in jobs:
        reader = formats.read(job.format, Path(job.folder), devices.cores())
        for batch in BATCHES:
            images = rng.integers(0, 256, (batch, job.size, job.size, 3), dtype=np.uint8)
            rows.append({"key": job.key, "format": job.format, **timed(reader.call, images)})
    print(json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
