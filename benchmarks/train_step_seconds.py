"""One process's seconds for a trial's train steps per backbone: the child that
`cpu_threads` and `cpu_isa` start once per setting, since TensorFlow fixes its thread
pools and oneDNN its instruction set when they start.

    python -m benchmarks.train_step_seconds [--threads N] [--forward] BACKBONE...

Run from the project root after `dvc repro` (it loads models/<name>/backbone.keras).
Per backbone: a warm run of step_compile's measurement (the first also builds the
model), then 80 train steps of batch 16, Grappler and XLA off. Prints one JSON line,
{backbone: seconds}; with `--forward`, {backbone: [train seconds, forward seconds]}
where the forward pass runs over 256 random images (what the activation cache does)
before the train steps.
"""

from __future__ import annotations

import argparse
import json
import time


def forward_pass(backbone):
    """A traced forward pass over 256 random images, warmed on 8 of them."""
    import numpy as np
    import tensorflow as tf

    forward = tf.function(lambda x: backbone(x, training=False))
    x = np.random.default_rng(0).random((256, *backbone.input_shape[1:]), np.float32)
    forward(x[:8]).numpy()
    return lambda: forward(x).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="+")
    parser.add_argument("--threads", type=int, default=0, help="intra-op; 0: TF's default")
    parser.add_argument("--forward", action="store_true", help="also time a forward pass")
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    if args.threads:  # before TensorFlow's first op, which fixes its pools
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    from benchmarks.step_compile import MODELS_DIR, time_step

    out: dict[str, float | list[float]] = {}
    for name in args.backbones:
        backbone = keras.models.load_model(MODELS_DIR / name / "backbone.keras", compile=False)
        time_step(backbone, False, False)  # warm: the first run also builds the model
        if args.forward:
            run_forward = forward_pass(backbone)
            start = time.perf_counter()
            run_forward()
            forward = time.perf_counter() - start  # read before the train steps run
            out[name] = [time_step(backbone, False, False)[1], forward]
        else:
            out[name] = time_step(backbone, False, False)[1]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
