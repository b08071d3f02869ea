"""Where each stage writes, relative to the project root: dvc.yaml's `outs`, in one place.

Stages, engine, CLI and tests import these names from here, so no module reaches up into
a stage for a path.
"""

from pathlib import Path

DATA_DIR = Path("data/tfds")  # prepare: the TFDS data_dir
MANIFEST = Path("data/manifest.json")  # prepare: splits and counts
WEIGHTS_DIR = Path("data/weights")  # weights: each model file's sha256
MODELS_DIR = Path("models")  # backbone@<name>: backbone.keras, meta.json
SCREEN_DIR = Path("results/screen")  # screen: scores.csv, decisions/<name>.json
SWEEP_DIR = Path("results/sweep")  # sweep@<name>: trials.csv, best.json
STUDIES_DIR = Path("results/optuna")  # sweep@<name>: the study (persist: true)
CACHE_DIR = Path("results/cache")  # sweep@ and final@: frozen-prefix activations spilled
FINAL_DIR = Path("results/final")  # final@<name>: runs.csv, depth.csv, summary.json
RECOMMENDED_DIR = MODELS_DIR / "recommended"  # export: the recommendation's files and card
COSTS = Path("results/costs/latency.csv")  # export: every candidate's size and latency
LINEAR_BASELINE = Path("results/baseline/linear_pixels.csv")  # linear_baseline
REPORTS_DIR = Path("reports")  # report
