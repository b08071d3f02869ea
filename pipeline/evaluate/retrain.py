"""The search's best configurations retrained over seeds on train+val and tested once,
beside the scratch baseline and the freeze-depth curve; the selected one exported.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import progress, provenance
from pipeline.config import Params
from pipeline.data import augment
from pipeline.data.datasets import TRAINVAL
from pipeline.errors import ThawError
from pipeline.evaluate import baselines, depth_curve, probe
from pipeline.evaluate.ranking import PROBE, SCRATCH, TRANSFER, by_rank
from pipeline.models import configuration
from pipeline.models.configuration import recorded_size
from pipeline.models.strategies import StrategyPlan
from pipeline.paths import BEST_DIR, SWEEP_DIR
from pipeline.screen import decision
from pipeline.train import runner
from pipeline.train.context import Contexts, RunContext, manifest_sizes
from pipeline.winner import card, export
from pipeline.winner.saved_model_job import SavedModelJob

SPLITS = ("train", "val", TRAINVAL, "test")


def ranked_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials by validation accuracy (fewer parameters first on ties), `rank` 1..n."""
    done = trials[trials.state == "COMPLETE"]
    if done.empty:
        raise ThawError("no completed trial to retrain; see fail_reason in the sweep's trials.csv")
    ranked = by_rank(done)
    return ranked.assign(rank=range(1, len(ranked) + 1))


def chosen_trials(trials: pd.DataFrame, k: int) -> pd.DataFrame:
    """What the stage retrains: the top k, and each strategy's best (both chosen on validation).

    `top_k` and `strategy_best` say why a row is there; a row may be both.
    """
    ranked = ranked_trials(trials)
    ranked = ranked.assign(
        top_k=ranked["rank"] <= k,
        strategy_best=~ranked.duplicated("strategy", keep="first"),
    )
    return ranked[ranked.top_k | ranked.strategy_best]


def best_epoch(per_epoch: str) -> int:
    """1-based epoch of the first best validation accuracy, from trials.csv's column."""
    values = [float(a) for a in str(per_epoch).split(";")]
    return int(np.argmax(values)) + 1


def replay_schedule(plan: StrategyPlan, phase_epochs: list[int], epochs: int) -> StrategyPlan:
    """The plan's phases for the epochs the trial ran each, ending after `epochs` in all."""
    phases, left = [], epochs
    for phase, ran in zip(plan.phases, phase_epochs):
        n = min(ran, left)
        if n > 0:
            phases.append(dataclasses.replace(phase, epochs=n))
        left -= n
    return dataclasses.replace(plan, phases=tuple(phases))


def what_ran(row, replayed: StrategyPlan, full: StrategyPlan, info) -> tuple[str, float]:
    """The row's plan text and frozen fraction for what the retraining ran: when the
    trial's best epoch fell in an early phase (LP-FT's probe, gradual's first steps),
    the later phases never run, and the row must not claim them."""
    if len(replayed.phases) == len(full.phases):
        return row["plan"], float(row["frozen_fraction"])
    trained = {n for p in replayed.phases for n in p.trainable_layers}
    kept = len(replayed.phases)
    if not trained:
        return (
            f"head only: the trial's best epoch came in phase {kept} of {len(full.phases)}, "
            f"before any backbone layer trained (searched as: {row['plan']})",
            1.0,
        )
    return (
        f"the first {kept} of {len(full.phases)} phases, where the trial's best epoch came "
        f"(searched as: {row['plan']})",
        info.fraction_frozen(replayed.phases[-1].trainable_layers),
    )


def _phase_epochs(row, plan: StrategyPlan) -> list[int]:
    recorded = row.get("phase_epochs")
    if isinstance(recorded, str) and recorded:
        return json.loads(recorded)
    return [p.epochs for p in plan.phases]  # a study from before phase_epochs was recorded


def retrain(ctx: RunContext, row, seed: int, on_trained=None) -> dict:
    """One trial's configuration, retrained on train+val from the pretrained weights.

    `on_trained(head)` runs while the backbone and `head` hold this run's weights."""
    config = configuration.from_row(row, ctx.size, ctx.search)
    full = runner.plan_of(ctx, config)
    epochs = best_epoch(row["val_accuracy_per_epoch"])
    plan = replay_schedule(full, _phase_epochs(row, full), epochs)
    outcome = runner.run(ctx, config, seed, runner.FINAL, plan=plan, on_trained=on_trained)
    result = outcome.result
    described, frozen_fraction = what_ran(row, plan, full, ctx.info)
    return {
        "kind": TRANSFER,
        "rank": int(row["rank"]),
        "trial": int(row["trial"]),
        "top_k": bool(row["top_k"]),
        "strategy_best": bool(row["strategy_best"]),
        "seed": seed,
        "strategy": plan.strategy,
        "plan": described,
        "image_size": ctx.size,
        "augmentation": config.augmentation,
        "class_weight": config.class_weight,
        "head_units": config.head_units,
        "learning_rate": config.learning_rate,
        "frozen_fraction": frozen_fraction,
        "epochs": epochs,
        "val_accuracy": float(row["val_accuracy"]),
        "test_accuracy": result.test_accuracy,
        "test_balanced_accuracy": result.test_balanced_accuracy,
        "test_correct": result.test_correct,
        "val_correct": row.get("val_correct", ""),  # the selecting trial's, for the report
        "val_loss": row.get("val_loss", float("nan")),  # the selecting trial's: breaks ties
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "device_seconds": result.device_seconds,
        "device": result.device,
        "device_kind": result.device_kind,
        "train_flops": outcome.train_flops,
    }


def run_scratch(ctx: RunContext, best, seeds: list[int], bn_momentum: float) -> list[dict]:
    """The same architecture and head from a random initialisation, nothing frozen."""
    config = configuration.from_row(best, ctx.size, ctx.search)
    baseline = baselines.scratch(
        ctx.backbone, config.head_units, config.dropout, ctx.num_classes, bn_momentum
    )
    protocol = baselines.Protocol.of(ctx.search, seeds)
    rows = baselines.select_and_test(baseline, ctx.splits, protocol)
    for row in rows:
        row.update(
            head_units=config.head_units,
            plan="from scratch, nothing frozen",
            image_size=ctx.size,
            augmentation=augment.NONE,
        )
    return rows


class Exporter:
    """Keeps the selected configuration's first finished run as models/best/<name>/:
    model.keras when it has trained, then (`start`) its SavedModel and its test, measured
    on the file as saved (what a user who loads it gets), in `job`'s process."""

    def __init__(self, manifest: dict, out: Path, job: SavedModelJob):
        self.manifest, self.out, self.job = manifest, out, job
        self.ctx: RunContext | None = None  # the selected configuration's, once loaded
        self.saved = False

    def wanted(self, row) -> bool:
        return int(row["rank"]) == 1 and not self.saved

    def __call__(self, head) -> None:
        print(f"final: exporting to {self.out}/model.keras", file=sys.stderr, flush=True)
        model = export.build(self.ctx.backbone, head, self.ctx.meta, self.manifest)
        export.save_keras(model, self.out)
        self.saved = True

    def start(self) -> None:
        if self.saved:
            print(f"final: writing {self.out}/saved_model and testing the saved model, "
                  "beside the rest", file=sys.stderr, flush=True)  # fmt: skip
            self.job.write_and_test()

    def card(self, runs: pd.DataFrame) -> dict:
        if not self.saved:
            raise ThawError(
                f"no model to export to {self.out}: every run of the selected configuration "
                "failed (fail_reason in results/final/<name>/runs.csv)"
            )
        selected = runs[(runs.kind == TRANSFER) & (runs["rank"] == 1)]
        first = selected.dropna(subset=["test_accuracy"]).iloc[0]
        keys = ("trial", "seed", "strategy", "plan", "image_size", "augmentation", "head_units",
                "learning_rate", "epochs", "frozen_fraction", "trainable_params", "total_params",
                "val_accuracy")  # fmt: skip
        integers = {"trial", "seed", "image_size", "head_units", "epochs", "trainable_params",
                    "total_params"}  # fmt: skip
        chosen = {k: int(first[k]) if k in integers else _plain(first[k]) for k in keys}
        seeds = {
            "seeds": int(selected.test_accuracy.count()),
            "mean": float(selected.test_accuracy.mean()),
            "sd": float(selected.test_accuracy.std()),
        }
        return card.card(
            self.ctx.meta["name"], chosen, seeds, self.manifest, self.ctx.meta,
            self.job.result(),
        )  # fmt: skip


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def run_final(
    name: str, params: Params, manifest: dict, out: Path, best: Path | None = None
) -> pd.DataFrame:
    best = best or BEST_DIR / name
    # the export's process starts TensorFlow on the idle core while this one loads data
    job = SavedModelJob(best, manifest, params.seed, params.deterministic)
    try:
        return _run_final(name, params, manifest, out, Exporter(manifest, best, job))
    finally:
        job.stop()  # a failure leaves no export process behind


def _run_final(
    name: str, params: Params, manifest: dict, out: Path, exporter: Exporter
) -> pd.DataFrame:
    trials = pd.read_csv(SWEEP_DIR / name / "trials.csv", dtype={"val_correct": str})
    top = chosen_trials(trials, params.report.top_k)
    sizes = decision.screened_sizes(name, manifest_sizes(manifest))  # those it was swept at
    contexts = Contexts(name, params, manifest, SPLITS, sizes)
    ctx = contexts.at(recorded_size(top.iloc[0]))  # the selected configuration's size
    exporter.ctx = ctx
    seeds = baselines.retrain_seeds(params.seed, params.report.seeds)
    exporter.job.wait_ready()  # idle from here on: no timed run shares the CPU with its start
    rows = _retrain_all(name, top, contexts, seeds, exporter)
    rows += _logged(name, _probe_runs(ctx, seeds))
    if params.report.scratch:
        rows += _logged(name, _scratch_runs(contexts, top, seeds, params.pretrain.bn_momentum))
    runs = pd.DataFrame(rows)
    runs.insert(0, "backbone", name)
    # every run whose seconds the report quotes is done: the export may now run beside
    exporter.start()
    same_size = trials[[recorded_size(r) in (None, ctx.size) for _, r in trials.iterrows()]]
    # at the selected configuration's size, with its own seed count: the curve describes,
    # it selects nothing, and its fine-tuned runs are the stage's costliest
    curve_seeds = baselines.retrain_seeds(params.seed, params.report.curve_seeds)
    curve = depth_curve.trace(ctx, same_size, curve_seeds)
    _finish(name, params, out, runs, curve, {"seeds": seeds, "curve_seeds": curve_seeds})
    card.write_card(exporter.out, exporter.card(runs))
    return runs


def _retrain_all(name: str, top, contexts: Contexts, seeds: list[int], exporter) -> list[dict]:
    rows = []
    runs_wanted = [(row, seed) for _, row in top.iterrows() for seed in seeds]
    for row, seed in progress.bar(runs_wanted, f"final {name}: retraining", unit="run"):
        try:
            keep = exporter if exporter.wanted(row) else None
            rows.append(retrain(contexts.at(recorded_size(row)), row, seed, keep))
        except Exception as exc:  # recorded, and the other runs go on
            rows.append(
                _failed(exc, kind=TRANSFER, rank=row["rank"], trial=row["trial"], seed=seed,
                        strategy=row["strategy"], top_k=row["top_k"],
                        strategy_best=row["strategy_best"])
            )  # fmt: skip
        _log(name, rows[-1])
    return rows


def _probe_runs(ctx: RunContext, seeds: list[int]) -> list[dict]:
    """The converged linear probe, at the selected configuration's size."""
    try:
        return probe.select_and_test(ctx, seeds)
    except Exception as exc:
        return [_failed(exc, kind=TRANSFER, rank=0, trial=-1, seed=seeds[0],
                        strategy=PROBE, top_k=False, strategy_best=False)]  # fmt: skip


def _scratch_runs(contexts: Contexts, top, seeds: list[int], bn_momentum: float) -> list[dict]:
    """At the smallest searched size: training a whole network is the costliest run here,
    and a smaller input can only handicap the baseline, never flatter transfer."""
    try:
        return run_scratch(contexts[contexts.sizes[0]], top.iloc[0], seeds, bn_momentum)
    except Exception as exc:
        return [_failed(exc, kind=SCRATCH, seed=seeds[0])]


def _logged(name: str, rows: list[dict]) -> list[dict]:
    for row in rows:
        _log(name, row)
    return rows


def _finish(name: str, params: Params, out: Path, runs, curve, seeds: dict) -> None:
    """runs.csv, depth.csv and summary.json."""
    curve.insert(0, "backbone", name)
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / "runs.csv", index=False)
    curve.to_csv(out / "depth.csv", index=False)
    summary = {
        "backbone": name,
        **seeds,
        "top_k": params.report.top_k,
        "versions": provenance.package_versions(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def _failed(exc: Exception, **row) -> dict:
    return {**row, "test_accuracy": float("nan"), "fail_reason": f"{type(exc).__name__}: {exc}"}


def _log(name: str, row: dict) -> None:
    head = f"[final {name}] {row['kind']} {row.get('rank', '')} seed {row['seed']}"
    if row.get("fail_reason"):
        print(f"{head}: FAILED {row['fail_reason']}", file=sys.stderr, flush=True)
        return
    print(
        f"{head}: test {row['test_accuracy']:.3f} (val {row['val_accuracy']:.3f}), "
        f"{row['device_seconds']:.1f} s",
        file=sys.stderr,
        flush=True,
    )
