"""What 8-bit quantisation buys on this CPU: the default's two ImageNet backbones as the
export stage writes them (served Keras model, TFLite float32, TFLite full-integer int8),
timed side by side in one fresh process, at batch 1 and 32.

    python -m benchmarks.tflite_latency        # after `dvc repro backbone` (models/<name>/)

Each backbone at 224 px with a 5-class linear head (random: latency depends on the
architecture, not the weights' values); the int8 file is calibrated on 100 of the
shipped flower photos. Prints median ms per image (fastest-slowest repeat) and the
int8 / float32 ratio per batch size.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = ("mobilenet_025", "mobilenet_v2")
SIZE = 224


def calibration_images(n: int = 100) -> np.ndarray:
    from PIL import Image

    from pipeline.data import image_files

    files = image_files.image_files(ROOT / "examples" / "flowers" / "photos")[:n]
    out = []
    for path in files:
        image = Image.fromarray(image_files.read_rgb(path))
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        square = image.crop((left, top, left + side, top + side))
        out.append(np.asarray(square.resize((SIZE, SIZE), Image.BILINEAR)))
    return np.stack(out)


def main() -> None:
    from pipeline import quiet_tf

    quiet_tf.load()
    import json

    import keras

    from pipeline.models import backbones
    from pipeline.recommend.candidates import random_head
    from pipeline.train import devices
    from pipeline.winner import export, formats, latency

    missing = [n for n in BACKBONES if not (ROOT / "models" / n / "backbone.keras").is_file()]
    if missing:
        sys.exit(f"models/{missing[0]}/backbone.keras not found: run `dvc repro backbone` first")
    calibration = calibration_images()
    manifest = {"image_size": SIZE, "resize": "crop"}
    jobs, scratch = [], Path(tempfile.mkdtemp(prefix="thaw_tflite_"))
    for name in BACKBONES:
        folder = ROOT / "models" / name
        meta = json.loads((folder / "meta.json").read_text())
        loaded = keras.models.load_model(folder / "backbone.keras", compile=False)
        backbone = backbones.at_size(loaded, SIZE)
        head = random_head(backbone.output_shape[-1], 0, 5, np.random.default_rng(0))
        out = scratch / name
        out.mkdir()
        full = export.build(backbone, head, meta, manifest)
        failed = formats.write(full, export.core(backbone, head, meta, manifest), out, calibration)
        assert not failed, failed
        for fmt in (formats.KERAS, formats.TFLITE, formats.TFLITE_INT8):
            jobs.append(latency.Job(name, fmt, str(out), SIZE))
    rows = latency.measure(jobs)
    print(f"\n{devices.current().name}, {devices.cores()} cores; ms per image, median of "
          f"{latency.REPEATS} repeats (fastest-slowest)")  # fmt: skip
    found = {(r["key"], r["format"], r["batch"]): r for r in rows}
    for name in BACKBONES:
        for fmt in (formats.KERAS, formats.TFLITE, formats.TFLITE_INT8):
            size = formats.size_bytes(scratch / name / formats.FILES[fmt]) / 1e6
            cells = [f"b{b} {found[name, fmt, b]['median_ms']:.2f} "
                     f"({found[name, fmt, b]['min_ms']:.2f}-{found[name, fmt, b]['max_ms']:.2f})"
                     for b in latency.BATCHES]  # fmt: skip
            print(f"{name:14s} {fmt:12s} {size:6.2f} MB  " + "  ".join(cells))
        for b in latency.BATCHES:
            ratio = (found[name, formats.TFLITE_INT8, b]["median_ms"]
                     / found[name, formats.TFLITE, b]["median_ms"])  # fmt: skip
            print(f"{name}: int8 / float32 TFLite latency at batch {b}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
