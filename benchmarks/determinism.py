"""What TensorFlow's op determinism costs, and whether runs repeat without it.

    python benchmarks/determinism.py [--backbone small_cnn] [--trials 12] [--repeats 3]

Run from the project root after `dvc repro` (it reads data/ and models/). Each
measurement is a fresh process (op determinism is process-wide and cannot be
switched off once on), alternating `deterministic: true` and `false`, so both
settings see the same machine state. A process pretrains the backbone as the
`backbone` stage does (not saved) and runs a sweep of `--trials` trials in an
in-memory study with params.yaml's search space. Prints the median seconds of
each part per setting, their ratio, and whether the repeats of each setting gave
bit-identical weights and trial values.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import hashlib, json, sys, time
import optuna
from pipeline.train import pretrain
from pipeline.search import pruning
from pipeline.search import objective
from pipeline.data import datasets
from pipeline.train import devices
from pipeline.config import load_params
from pipeline.train.context import Contexts
from pipeline.paths import MANIFEST

name, trials, deterministic = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
params = load_params()
params = params.model_copy(update={"deterministic": deterministic})
devices.make_reproducible(params.seed, deterministic)
manifest = datasets.read_manifest(MANIFEST)
start = time.perf_counter()
model, _ = pretrain.make_backbone(
    name, params.backbones[name], manifest, params.pretrain, params.seed
)
pretrain_seconds = time.perf_counter() - start
digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
optuna.logging.set_verbosity(optuna.logging.WARNING)
contexts = Contexts(name, params, manifest)
study = optuna.create_study(
    direction="maximize",
    sampler=optuna.samplers.TPESampler(seed=params.seed),
    pruner=pruning.make_pruner(params.sweep.pruner, params.search.epochs),
)
start = time.perf_counter()
study.optimize(lambda t: objective.run_trial(t, contexts), n_trials=trials)
seconds = time.perf_counter() - start
values = [t.user_attrs.get("val_accuracy_per_epoch") for t in study.trials]
out = {"pretrain": pretrain_seconds, "sweep": seconds, "weights": digest, "values": values}
print(json.dumps(out))
"""


def measure(name: str, trials: int, deterministic: bool) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(trials), "1" if deterministic else "0"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for _ in range(args.repeats):
        for deterministic in (True, False):
            runs[deterministic].append(measure(args.backbone, args.trials, deterministic))
    print(f"{args.backbone}: pretraining, then {args.trials} sweep trials; medians of "
          f"{args.repeats} fresh processes per setting")  # fmt: skip
    for part in ("pretrain", "sweep"):
        on = statistics.median(r[part] for r in runs[True])
        off = statistics.median(r[part] for r in runs[False])
        print(f"  {part:<8} deterministic {on:6.2f} s  not {off:6.2f} s  ratio {on / off:.2f}")
    for deterministic, label in ((True, "deterministic"), (False, "not deterministic")):
        same_weights = len({r["weights"] for r in runs[deterministic]}) == 1
        same_values = all(
            r["values"] == runs[deterministic][0]["values"] for r in runs[deterministic]
        )
        print(f"  {label}: repeats identical: weights {same_weights}, trial values {same_values}")


if __name__ == "__main__":
    main()
