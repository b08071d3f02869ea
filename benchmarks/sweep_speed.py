"""Thaw's sweep against the usual Optuna loop, side by side in one process.

    python -m benchmarks.sweep_speed                  # speed: both loops, default backbones
    python -m benchmarks.sweep_speed --memory 100     # resident memory over a 100-trial sweep

Run from the project root after `dvc repro` (it reads models/, data/ and
params.yaml). Both loops search the same space (params.yaml's `search`) with
the same TPE seed, the same number of trials and epochs, on the same split:

  usual: per trial, load the backbone file, build backbone + head, set the
         phase's `trainable` flags, `compile`, `fit` on images; no cache, no
         pruning, no early stopping (the Keras transfer-learning guide's loop);
  thaw:  `pipeline.search.objective`'s run_trial: backbone loaded once, frozen-prefix
         activation cache, lean traced steps, pruning and early stopping as
         configured in params.yaml.

Studies are in memory (nothing is written to results/). Each repeat runs the
two loops in alternating order; the summary quotes medians over repeats.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pipeline.data import datasets  # noqa: E402
from pipeline.paths import MANIFEST, MODELS_DIR  # noqa: E402
from pipeline.preflight import load_params  # noqa: E402
from pipeline.search import objective, pruning  # noqa: E402
from pipeline.train import context, devices, phases  # noqa: E402


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- (a) the usual loop ----------------------------------------------------------------------


def usual_classifier(backbone, head_units: int, num_classes: int, dropout: float):
    """The functional model of the Keras guide: Input -> backbone(training=False) -> head."""
    import keras
    from keras import layers

    class InferenceMode(keras.layers.Layer):  # keeps BN in inference mode under Keras 3's fit
        def __init__(self, inner):
            super().__init__(name=inner.name)
            self.inner = inner

        def call(self, x):
            return self.inner(x, training=False)

    inputs = keras.Input(backbone.input_shape[1:])
    x = layers.GlobalAveragePooling2D()(InferenceMode(backbone)(inputs))
    if head_units:
        x = layers.Dense(head_units, activation="relu")(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    return keras.Model(inputs, layers.Dense(num_classes, activation="softmax")(x))


def usual_objective(trial, contexts: context.Contexts, backbone_file: Path) -> float:
    import keras

    from pipeline.models import backbones

    keras.backend.clear_session()
    size = objective.suggest_size(trial, contexts.sizes)
    ctx = contexts[size]  # its splits at this size; the usual loop ignores its cache
    config = objective.suggest(trial, ctx.search, ctx.info, size)
    loaded = keras.models.load_model(backbone_file, compile=False)
    backbone = backbones.at_size(loaded, size)
    model = usual_classifier(backbone, config.head_units, ctx.num_classes, config.dropout)
    accuracies, epoch = [], 0
    for phase in config.plan.phases:
        phases.set_phase(backbone, phase)
        model.compile(keras.optimizers.Adam(phase.learning_rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])  # fmt: skip
        history = model.fit(
            *ctx.train,  # not augmented: the usual loop has no augmentation
            validation_data=ctx.val,
            batch_size=ctx.search.batch_size,
            initial_epoch=epoch,
            epochs=epoch + phase.epochs,
            verbose=0,
        )
        accuracies += history.history["val_accuracy"]
        epoch += phase.epochs
    trial.set_user_attr("strategy", config.plan.strategy)
    return max(accuracies)


# --- one side-by-side run --------------------------------------------------------------------


def run_loop(kind: str, name: str, params, manifest, seed: int, n_trials: int, on_trial=None):
    import optuna

    start = time.perf_counter()
    contexts = context.Contexts(name, params, manifest)
    if kind == "usual":  # conservative: the usual loop's clock skips Thaw's one-off loading
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
        start = time.perf_counter()  # and it runs with TensorFlow's default graph rewrites
    pruner = pruning.make_pruner(params.sweep.pruner, params.search.epochs)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner if kind == "thaw" else optuna.pruners.NopPruner(),
    )
    if kind == "thaw":  # `run`, not `objective`: that name is the module run_trial lives in
        run = lambda t: objective.run_trial(t, contexts)  # noqa: E731
    else:
        run = lambda t: usual_objective(t, contexts, MODELS_DIR / name / "backbone.keras")  # noqa: E731
    callbacks = [on_trial] if on_trial else []
    study.optimize(run, n_trials=n_trials, catch=(Exception,), callbacks=callbacks,
                   gc_after_trial=True)  # fmt: skip
    seconds = time.perf_counter() - start
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    head_only = [
        t.duration.total_seconds()
        for t in trials
        if t.params.get("strategy") == "head_only" and t.state.name == "COMPLETE"
    ]
    return {
        "loop": kind,
        "backbone": name,
        "seed": seed,
        "seconds": seconds,
        "per_trial": seconds / len(trials),
        "best": max((t.value for t in finished), default=float("nan")),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "failed": sum(t.state.name == "FAIL" for t in trials),
        "head_only_trial_s": head_only,
        "pool": [vars(c.pool.stats) for c in contexts.loaded()] if kind == "thaw" else None,
    }


def speed(args, params, manifest) -> None:
    rows = []
    for repeat in range(args.repeats):
        seed = params.seed + repeat
        for name in args.backbones:
            order = ("usual", "thaw") if repeat % 2 == 0 else ("thaw", "usual")
            pair = {}
            for kind in order:
                gc.collect()
                pair[kind] = run_loop(kind, name, params, manifest, seed, args.trials)
                rows.append(pair[kind])
            u, t = pair["usual"], pair["thaw"]
            print(
                f"repeat {repeat} {name:>13}: usual {u['per_trial']:6.2f} s/trial "
                f"(best {u['best']:.3f}) | thaw {t['per_trial']:6.2f} s/trial "
                f"(best {t['best']:.3f}, {t['pruned']} pruned) | "
                f"{u['per_trial'] / t['per_trial']:5.1f}x",
                flush=True,
            )
    device = devices.current()
    print(f"\nmedians over {args.repeats} repeats, {args.trials} trials each, "
          f"{params.search.epochs} epochs per trial, on {device.kind} {device.name} "
          f"({os.cpu_count()} cores visible)")  # fmt: skip
    print(f"{'backbone':>13} | usual s/trial | thaw s/trial | ratio | usual best | thaw best "
          "| thaw head_only trial s")  # fmt: skip
    for name in args.backbones:
        mine = [r for r in rows if r["backbone"] == name]
        usual = [r for r in mine if r["loop"] == "usual"]
        thaw = [r for r in mine if r["loop"] == "thaw"]
        med = statistics.median
        u, t = med(r["per_trial"] for r in usual), med(r["per_trial"] for r in thaw)
        head = [s for r in thaw for s in r["head_only_trial_s"]]
        head_text = f"{med(head):.2f} (n={len(head)})" if head else "none sampled"
        print(f"{name:>13} | {u:13.2f} | {t:12.2f} | {u / t:4.1f}x | "
              f"{med(r['best'] for r in usual):10.3f} | {med(r['best'] for r in thaw):9.3f} "
              f"| {head_text}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


def memory(args, params, manifest) -> None:
    samples: dict[int, float] = {}

    def record(study, trial) -> None:
        samples[trial.number + 1] = rss_mb()
        if trial.number + 1 in (1, 5, 10, 25, 50, 75, 100) or trial.number + 1 == args.memory:
            print(f"after trial {trial.number + 1:>3}: RSS {samples[trial.number + 1]:7.1f} MiB",
                  flush=True)  # fmt: skip

    for name in args.backbones:
        samples.clear()
        result = run_loop("thaw", name, params, manifest, params.seed, args.memory, record)
        base = samples[min(5, args.memory)]
        end = samples[args.memory]
        peak = max(v for k, v in samples.items() if k >= 5)
        print(f"{name}: {args.memory} trials in {result['seconds']:.0f} s; RSS after trial 5 "
              f"{base:.1f} MiB, after trial {args.memory} {end:.1f} MiB "
              f"({(end / base - 1) * 100:+.1f} %), highest after trial 5 {peak:.1f} MiB "
              f"({(peak / base - 1) * 100:+.1f} %); train steps {result['pool']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", help="default: every backbone in params.yaml")
    parser.add_argument("--trials", type=int, help="per loop; default: sweep.n_trials")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", type=int, metavar="N", help="memory run of N trials instead")
    parser.add_argument("--json", help="also write every run's numbers to this file")
    args = parser.parse_args()
    params = load_params()
    args.backbones = args.backbones or list(params.backbones)
    args.trials = args.trials or params.sweep.n_trials
    if not MANIFEST.is_file() or not all((MODELS_DIR / n).is_dir() for n in args.backbones):
        sys.exit("run `dvc repro` first: the benchmark reads data/ and models/")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    manifest = datasets.read_manifest(MANIFEST)
    (memory if args.memory else speed)(args, params, manifest)


if __name__ == "__main__":
    main()
