"""What capping oneDNN at AVX2 costs (`deterministic: true` does it), measured side by side.

    python benchmarks/cpu_isa.py [--backbones mobilenet_025 mobilenet_v2] [--repeats 3]

Run from the project root after `dvc repro`. oneDNN picks its kernels from the CPU's
instruction set at its first primitive, so each setting runs in a fresh process: the
machine's own set (ONEDNN_MAX_CPU_ISA=ALL) against the AVX2 cap that
`devices.pin_cpu_isa` sets. Each process, with one intra-op thread as the stages run,
times 80 train steps of batch 16 (step_compile.py's measurement) and a forward pass over
256 images (what the activation cache does) per backbone, at the backbone's stored
input size, `--repeats` times, alternating settings; prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics

from child import run_child

CHILD = """
import json, sys, time
import keras, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
sys.path.insert(0, "benchmarks")
from step_compile import MODELS_DIR, time_step
out = {}
for name in sys.argv[1:]:
    backbone = keras.models.load_model(MODELS_DIR / name / "backbone.keras", compile=False)
    time_step(backbone, False, False)  # warm: the first run also builds the model
    forward = tf.function(lambda x: backbone(x, training=False))
    x = np.random.default_rng(0).random((256, *backbone.input_shape[1:]), np.float32)
    forward(x[:8]).numpy()
    start = time.perf_counter()
    forward(x).numpy()
    out[name] = [time_step(backbone, False, False)[1], time.perf_counter() - start]
print(json.dumps(out))
"""


def measure(isa: str, backbones: list[str]) -> dict:
    return run_child(CHILD, backbones, ONEDNN_MAX_CPU_ISA=isa)


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
