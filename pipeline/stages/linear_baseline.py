"""Stage `linear_baseline`: softmax regression on raw pixels, the floor transfer must beat.

    python -m pipeline.stages.linear_baseline

Same protocol and budget as the transferred configurations (baselines.py):
learning rate chosen on validation, retrained per seed on train+val, tested
once. Writes `results/baseline/linear_pixels.csv`, one row per seed.
"""

from __future__ import annotations

import sys

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.evaluate import baselines
from pipeline.paths import LINEAR_BASELINE, MANIFEST
from pipeline.preflight import load_params


def main() -> None:
    params = load_params()
    runs = baselines.run_linear_pixels(params, datasets.read_manifest(MANIFEST))
    LINEAR_BASELINE.parent.mkdir(parents=True, exist_ok=True)
    runs.to_csv(LINEAR_BASELINE, index=False)
    print(
        f"linear baseline: test accuracy {runs.test_accuracy.mean():.3f} ± "
        f"{runs.test_accuracy.std():.3f} (lr {runs.learning_rate.iloc[0]:.1e})",
        file=sys.stderr,
    )


if __name__ == "__main__":
    run_main(main)
