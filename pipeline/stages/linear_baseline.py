"""Stage `linear_baseline`: softmax regression on raw pixels, the floor transfer must beat.

    python -m pipeline.stages.linear_baseline

Same protocol and budget as the transferred configurations (baselines.py):
learning rate chosen on validation, retrained per seed on train+val, tested
once. Writes `results/baseline/linear_pixels.csv`, one row per seed.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from pipeline.config import Params, load_params
from pipeline.data import datasets
from pipeline.data.datasets import TRAINVAL, load_target_splits
from pipeline.errors import run_main
from pipeline.evaluate import baselines
from pipeline.paths import LINEAR_BASELINE, MANIFEST
from pipeline.train import devices


def run(params: Params, manifest: dict) -> pd.DataFrame:
    devices.configure(params.seed, params.deterministic)
    splits = {
        name: ((s.images / np.float32(255.0)).astype(np.float32), s.labels)
        for name, s in load_target_splits(manifest, ("train", "val", TRAINVAL, "test")).items()
    }
    baseline = baselines.linear_pixels(
        splits["train"][0].shape[1:], len(manifest["target_classes"])
    )
    protocol = baselines.Protocol.of(
        params.search, baselines.retrain_seeds(params.seed, params.report.seeds)
    )
    runs = pd.DataFrame(baselines.select_and_test(baseline, splits, protocol))
    runs.insert(0, "backbone", "")
    runs["plan"] = "softmax regression on raw pixels"
    return runs


def main() -> None:
    params = load_params()
    runs = run(params, datasets.read_manifest(MANIFEST))
    LINEAR_BASELINE.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(LINEAR_BASELINE, index=False)
    print(
        f"linear baseline: test accuracy {runs.test_accuracy.mean():.3f} ± "
        f"{runs.test_accuracy.std():.3f} (lr {runs.learning_rate.iloc[0]:.1e})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_main(main)
