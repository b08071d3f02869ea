"""Compile options for a trial's train step, measured side by side on this device.

    python -m benchmarks.step_compile [--backbones small_cnn mobilenet_v2] [--repeats 3]

Run from the project root after `dvc repro`. For each backbone (full model,
head of 32 units, batch of 16) it times the first call of Thaw's train step
(tracing + graph optimisation or XLA compilation + one step) and the next 80
steps (one default trial's worth), with TensorFlow's graph optimiser (Grappler)
on or off and XLA off or on. Medians over repeats. `devices.tune_graph_optimizer`
and the choice not to use XLA rest on these numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline.paths import MODELS_DIR  # noqa: E402
from pipeline.train import devices, loop, phases  # noqa: E402

STEPS = 80  # 20 epochs x 4 batches of 16: the default trial


def time_step(backbone, grappler: bool, xla: bool) -> tuple[float, float]:
    import numpy as np
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not grappler})
    model = phases.build_classifier(backbone, 32, 5, 0.2)
    step = loop.Step(model, backbone.input_shape[1:], 1e-3)
    train = tf.function(step._train, input_signature=step.train_step.input_signature,
                        jit_compile=xla)  # fmt: skip
    x = np.random.default_rng(0).random((16, *backbone.input_shape[1:]), np.float32)
    y = (np.arange(16) % 5).astype(np.int32)
    start = time.perf_counter()
    float(train(x, y))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(STEPS):
        loss = train(x, y)
    float(loss)
    return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["small_cnn", "mobilenet_v2"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import keras

    device = devices.current()
    print(f"{device.kind} {device.name}, {os.cpu_count()} cores visible; medians of "
          f"{args.repeats}")  # fmt: skip
    print(f"{'backbone':>13} | grappler | xla | first call s | {STEPS} steps s")
    for name in args.backbones:
        backbone = keras.models.load_model(MODELS_DIR / name / "backbone.keras", compile=False)
        for grappler, xla in ((True, False), (False, False), (False, True)):
            runs = [time_step(backbone, grappler, xla) for _ in range(args.repeats)]
            first = statistics.median(r[0] for r in runs)
            steps = statistics.median(r[1] for r in runs)
            print(f"{name:>13} | {'on' if grappler else 'off':>8} | {'on' if xla else 'off':>3} "
                  f"| {first:12.2f} | {steps:8.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
