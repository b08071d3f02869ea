"""What storing a backbone's weights compactly costs: the float32 ImageNet file against the
file `thaw compact-weights` writes from it, side by side on real photos.

    python -m benchmarks.compact_weights          # ../shared/data: flowers5, MobileNetV2 1.0

Both backbones embed the same photos (centre crop, 224 px); the rows give the file sizes,
how far the compact file's pooled features are from the original's (relative L2 error,
cosine similarity), and the test accuracy of a logistic probe on each backbone's features
(standardised, C chosen on a validation split; 40 train and 40 val photos per class).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = ROOT.parent / "shared" / "data"
V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
SIZE = 224


def photos(folder: Path, per_class: int, seed: int = 0):
    """Every photo of the folder at SIZE px, with its class and a stratified split."""
    from PIL import Image, ImageOps

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    images, labels, split = [], [], []
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        files = sorted((folder / name).iterdir())
        order = rng.permutation(len(files))
        for rank, index in enumerate(order):
            with Image.open(files[index]) as image:
                square = ImageOps.fit(image.convert("RGB"), (SIZE, SIZE))
            images.append(np.asarray(square))
            labels.append(label)
            split.append("train" if rank < per_class else "val" if rank < 2 * per_class else "test")
    return np.stack(images), np.array(labels), np.array(split)


def features(weights: str, images: np.ndarray) -> np.ndarray:
    import keras

    from pipeline.config import BackboneParams
    from pipeline.models import backbones

    keras.backend.clear_session()
    base = backbones.build("mobilenet_v2", SIZE, weights, BackboneParams(alpha=1.0))
    pooled = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])
    x = keras.applications.mobilenet_v2.preprocess_input(images.astype("float32"))
    return pooled.predict(x, batch_size=64, verbose=0)


def probe_accuracy(x: np.ndarray, y: np.ndarray, split: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def fit(c: float, on: np.ndarray):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        return probe.fit(x[on], y[on])

    train, val, test = (split == s for s in ("train", "val", "test"))
    c = max((0.01, 0.1, 1.0, 10.0), key=lambda c: fit(c, train).score(x[val], y[val]))
    return fit(c, train | val).score(x[test], y[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "flowers5"))
    parser.add_argument("--weights", default=str(SHARED / "weights" / V2_FILE))
    parser.add_argument("--per-class", type=int, default=40)
    args = parser.parse_args()
    for path in (args.data, args.weights):
        if not Path(path).exists():
            sys.exit(f"{path} not found: pass --data/--weights (see ../shared/data/README.md)")
    from pipeline.models import weights_file

    images, labels, split = photos(Path(args.data), args.per_class)
    with tempfile.TemporaryDirectory() as tmp:
        compact = Path(tmp) / "compact.h5"
        weights_file.compact(args.weights, compact)
        sizes = [Path(args.weights).stat().st_size, compact.stat().st_size]
        full, small = features(args.weights, images), features(str(compact), images)
    error = np.linalg.norm(full - small, axis=1) / np.linalg.norm(full, axis=1)
    cosine = (full * small).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(small, axis=1)
    accuracy = [probe_accuracy(x, labels, split) for x in (full, small)]
    print(f"{Path(args.data).name}: {len(labels)} photos at {SIZE} px, "
          f"{int((split == 'test').sum())} of them test")  # fmt: skip
    print(f"{'file':<10}{'MB':>6}{'probe test acc':>16}")
    for name, size, acc in zip(("float32", "compact"), sizes, accuracy):
        print(f"{name:<10}{size / 1e6:>6.2f}{acc:>16.3f}")
    print(f"compact / float32 size: {sizes[1] / sizes[0]:.2f}; pooled features: relative L2 "
          f"error median {np.median(error):.3f} (max {error.max():.3f}), cosine median "
          f"{np.median(cosine):.4f} (min {cosine.min():.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
