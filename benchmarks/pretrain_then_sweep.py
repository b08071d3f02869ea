"""One process of `determinism`: pretrain a backbone and run a short sweep, with op
determinism on or off for the whole process (it cannot be switched off once on).

    python -m benchmarks.pretrain_then_sweep BACKBONE TRIALS [--deterministic]

Run from the project root after `dvc repro` (it reads data/ and params.yaml). Pretrains
the backbone as the `backbone` stage does (not saved), then runs TRIALS trials in an
in-memory study with params.yaml's search space and pruner. Prints one JSON line: the
seconds of each part, a digest of the pretrained weights and each trial's validation
accuracies per epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import optuna

from pipeline.data import datasets
from pipeline.paths import MANIFEST
from pipeline.preflight import load_params
from pipeline.search import objective, pruning
from pipeline.train import devices, pretrain
from pipeline.train.context import Contexts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone")
    parser.add_argument("trials", type=int)
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    name = args.backbone
    params = load_params()
    params = params.model_copy(update={"deterministic": args.deterministic})
    devices.make_reproducible(params.seed, args.deterministic)
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
    study.optimize(lambda t: objective.run_trial(t, contexts), n_trials=args.trials)
    seconds = time.perf_counter() - start
    values = [t.user_attrs.get("val_accuracy_per_epoch") for t in study.trials]
    out = {"pretrain": pretrain_seconds, "sweep": seconds, "weights": digest, "values": values}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
