"""Where a sweep's time goes: Thaw's trials under cProfile, split by kind of work.

    python -m benchmarks.trial_profile [--backbone mobilenet_v2] [--trials 12]

Run from the project root after `dvc repro`. Runs one in-memory study with
params.yaml's search space and pruner, then prints seconds spent tracing
(building graphs for train and inference steps), executing them (the epochs
and the cache's forward passes), in the data path (batch gathering), in
garbage collection, in the Optuna sampler, and the rest.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline.data import datasets  # noqa: E402
from pipeline.paths import MANIFEST  # noqa: E402
from pipeline.preflight import load_params  # noqa: E402
from pipeline.search import objective, pruning  # noqa: E402
from pipeline.train import context  # noqa: E402

# (label, file suffix, function name): cumulative time of these entry points.
CATEGORIES = [
    ("tracing (graph building)", "tracing_compilation.py", "_create_concrete_function"),
    ("executing traced steps", "execute.py", "quick_execute"),
    ("data path (batch gather)", "loop.py", "_take"),
    ("garbage collection", "~", "<built-in method gc.collect>"),
    ("Optuna sampler", "study.py", "ask"),
]


def cumulative(stats: pstats.Stats, suffix: str, function: str) -> float:
    return sum(
        row[3]
        for (file, _, name), row in stats.stats.items()
        if name == function and file.endswith(suffix)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    params = load_params()
    manifest = datasets.read_manifest(MANIFEST)
    start = time.perf_counter()
    contexts = context.Contexts(args.backbone, params, manifest)
    ctx = contexts.first  # loaded up front, so its loading is not in the trials' time
    loading = time.perf_counter() - start
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=pruning.make_pruner(params.sweep.pruner, params.search.epochs),
    )
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    run = lambda t: objective.run_trial(t, contexts)  # noqa: E731
    study.optimize(run, n_trials=args.trials, catch=(Exception,))
    profile.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profile)
    print(f"{args.backbone}: {args.trials} trials in {total:.1f} s (+{loading:.1f} s loading "
          f"the backbone once); largest size's cache: {ctx.cache.stats.computed} arrays in "
          f"{ctx.cache.stats.seconds:.1f} s; steps: {vars(ctx.pool.stats)}")  # fmt: skip
    accounted = 0.0
    for label, suffix, function in CATEGORIES:
        seconds = cumulative(stats, suffix, function)
        accounted += seconds
        print(f"  {label:<28} {seconds:6.1f} s  {seconds / total:5.0%}")
    print(f"  {'other (Python, Keras calls)':<28} {total - accounted:6.1f} s  "
          f"{(total - accounted) / total:5.0%}")  # fmt: skip
    for t in study.trials:
        print(f"  trial {t.number:>2} {t.state.name:<8} {t.params.get('strategy'):<13} "
              f"{t.duration.total_seconds():5.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
