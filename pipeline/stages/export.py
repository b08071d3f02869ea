"""Stage `export`: the recommendation itself, as files to deploy, tested and timed.

    python -m pipeline.stages.export

Picks what the report recommends (the report's own rule, `selection.recommendation`, on
the same results), retrains it on train+val exactly as the final stage tested it (the
same configuration, schedule and seed; the converged probe refit, its standardisation
folded into a Dense layer), and writes `models/recommended/`: model.keras,
saved_model/, model.tflite (float32), model_int8.tflite (full-integer, calibrated on
training images) and card.json / card.md. Each file's test accuracy is measured on the
file; each is timed at batch 1 and 32 on this machine, in a fresh process, beside every
candidate's architecture (`results/costs/latency.csv`). The report, after it, shows both.
"""

from __future__ import annotations

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.paths import COSTS, MANIFEST, RECOMMENDED_DIR
from pipeline.preflight import load_params
from pipeline.recommend import exported


def main() -> None:
    params = load_params()
    made = exported.export(params, datasets.read_manifest(MANIFEST), RECOMMENDED_DIR, COSTS)
    for name, f in made["files"].items():
        scored = (
            f"test {f['test_accuracy']:.4f}" if "error" not in f else f"not written: {f['error']}"
        )
        print(f"export: {RECOMMENDED_DIR / f['file']}: {scored}")


if __name__ == "__main__":
    run_main(main)
