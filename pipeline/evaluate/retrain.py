"""The search's best configurations retrained over seeds on train+val and tested once,
beside the scratch baseline and the freeze-depth curve. The export stage retrains the
recommendation through the same `retrain` (winner files: pipeline/recommend/).
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
from pipeline.paths import SWEEP_DIR
from pipeline.screen import decision
from pipeline.train import runner
from pipeline.train.context import Contexts, RunContext, manifest_sizes

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


def run_final(name: str, params: Params, manifest: dict, out: Path) -> pd.DataFrame:
    trials = pd.read_csv(SWEEP_DIR / name / "trials.csv", dtype={"val_correct": str})
    top = chosen_trials(trials, params.report.top_k)
    sizes = decision.screened_sizes(name, manifest_sizes(manifest))  # those it was swept at
    contexts = Contexts(name, params, manifest, SPLITS, sizes)
    ctx = contexts.at(recorded_size(top.iloc[0]))  # the rank-1 configuration's size
    seeds = baselines.retrain_seeds(params.seed, params.report.seeds)
    rows = _retrain_all(name, top, contexts, seeds)
    rows += _logged(name, _probe_runs(ctx, seeds))
    if params.report.scratch:
        rows += _logged(name, _scratch_runs(contexts, top, seeds, params.pretrain.bn_momentum))
    runs = pd.DataFrame(rows)
    runs.insert(0, "backbone", name)
    same_size = trials[[recorded_size(r) in (None, ctx.size) for _, r in trials.iterrows()]]
    # at the rank-1 configuration's size, with its own seed count: the curve describes,
    # it selects nothing, and its fine-tuned runs are the stage's costliest
    curve_seeds = baselines.retrain_seeds(params.seed, params.report.curve_seeds)
    curve = depth_curve.trace(ctx, same_size, curve_seeds)
    _finish(name, params, out, runs, curve, {"seeds": seeds, "curve_seeds": curve_seeds})
    return runs


def trial_row(trials: pd.DataFrame, k: int, trial: int | None):
    """A retrained trial's row as `chosen_trials` gave it to the final stage (rank, flags);
    None: the rank-1 trial."""
    top = chosen_trials(trials, k)
    found = top.iloc[:1] if trial is None else top[top.trial == trial]
    if found.empty:
        raise ThawError(f"trial {trial} is not among the trials the final stage retrained")
    return found.iloc[0]


def _retrain_all(name: str, top, contexts: Contexts, seeds: list[int]) -> list[dict]:
    rows = []
    runs_wanted = [(row, seed) for _, row in top.iterrows() for seed in seeds]
    for row, seed in progress.bar(runs_wanted, f"final {name}: retraining", unit="run"):
        try:
            rows.append(retrain(contexts.at(recorded_size(row)), row, seed))
        except Exception as exc:  # recorded, and the other runs go on
            rows.append(
                _failed(exc, kind=TRANSFER, rank=row["rank"], trial=row["trial"], seed=seed,
                        strategy=row["strategy"], top_k=row["top_k"],
                        strategy_best=row["strategy_best"])
            )  # fmt: skip
        _log(name, rows[-1])
    return rows


def _probe_runs(ctx: RunContext, seeds: list[int]) -> list[dict]:
    """The converged linear probe, at the rank-1 configuration's size."""
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
