"""Stage `sweep@<name>`: an Optuna study over freezing strategy, head and learning rate.

    python -m pipeline.sweep <name>

Reads `seed`, `search` and `sweep` from params.yaml, the backbone from
`models/<name>/` and the target splits from the manifest. The study lives in
persistent storage and the stage ends when it holds `sweep.n_trials` completed
trials with every strategy at its minimum, or its cap of finished ones
(budget.py), so an interrupted run resumes where it stopped, and several
workers pointed at one `sweep.storage` share the work. Writes
`results/sweep/<name>/trials.csv` and `best.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline import budget, data, flops, pruning, strategies, studies, training
from pipeline.config import Params, PrunerParams, SearchParams, backbone_stage_args
from pipeline.context import MB, MODELS_DIR, RunContext, effective_search, load_context
from pipeline.errors import ThawError, run_main
from pipeline.pool import release_memory
from pipeline.prepare import MANIFEST

RESULTS_DIR = Path("results/sweep")
__all__ = ["MODELS_DIR", "RunContext", "load_context", "run_trial", "sweep"]


@dataclass(frozen=True)
class TrialConfig:
    head_units: int
    dropout: float
    learning_rate: float
    plan: strategies.StrategyPlan


def suggest(trial, search: SearchParams, info: strategies.BackboneInfo) -> TrialConfig:
    """Every suggestion of a trial; a strategy's own only when it was chosen."""
    head_units = trial.suggest_categorical("head_units", search.head_units)
    dropout = 0.0
    if head_units > 0:
        dropout = trial.suggest_float(
            "head_dropout", search.head_dropout.low, search.head_dropout.high
        )
    r = search.learning_rate
    learning_rate = trial.suggest_float("learning_rate", r.low, r.high, log=True)
    plan = strategies.suggest_plan(trial, search, info, learning_rate)
    return TrialConfig(head_units, dropout, learning_rate, plan)


def recorded_config(row, ctx: RunContext) -> TrialConfig:
    """A recorded trial's configuration (a trials.csv row), rebuilt as the sweep built it."""
    import optuna

    return suggest(optuna.trial.FixedTrial(json.loads(row["params"])), ctx.search, ctx.info)


def run_trial(trial, ctx: RunContext) -> float:
    """Objective: best validation accuracy over the trial's epochs.

    Reports the best-so-far accuracy after each epoch; a pruner's stop is
    recorded (`pruned_at_epoch`) and raised as TrialPruned after the costs are.
    """
    import optuna

    release_memory()  # cheap: load_context froze everything alive before the first trial
    ctx.restore()
    config = suggest(trial, ctx.search, ctx.info)
    plan = config.plan
    trial.set_user_attr("strategy", plan.strategy)
    trial.set_user_attr("frozen_fraction", plan.frozen_fraction)
    trial.set_user_attr("fine_tunes", plan.fine_tunes)
    trial.set_user_attr("phases", len(plan.phases))
    trial.set_user_attr("plan", plan.description)
    per_epoch: list[float] = []
    if len(plan.phases) == 1:
        trial.set_user_attr(pruning.LAST_PHASE_FROM, 0)

    def on_epoch(epoch: int, accuracy: float) -> bool:
        per_epoch.append(accuracy)
        trial.set_user_attr("val_accuracy_per_epoch", per_epoch)
        trial.report(max(per_epoch), epoch)
        return trial.should_prune()

    def on_phase_end(index: int, _step) -> None:
        if index + 2 == len(plan.phases):  # the last phase starts now: the pruner may judge it
            trial.set_user_attr(pruning.LAST_PHASE_FROM, len(per_epoch))

    try:
        head = ctx.pool.head(config.head_units, config.dropout, ctx.seed + trial.number)
        model = ctx.pool.model(0, head)
        result = training.train_plan(
            model,
            ctx.backbone,
            plan,
            ctx.train,
            ctx.val,
            batch_size=ctx.search.batch_size,
            seed=ctx.seed + trial.number,
            on_epoch=on_epoch,
            on_phase_end=on_phase_end,
            cache=ctx.cache,
            pool=ctx.pool,
            patience=ctx.search.patience,
        )
    except Exception as exc:
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
        raise
    for key in (
        "trainable_params",
        "max_trainable_params",
        "frozen_params",
        "total_params",
        "device",
        "device_kind",
        "device_seconds",
        "stopped",
        "cached_phases",
        "phase_epochs",
    ):
        trial.set_user_attr(key, getattr(result, key))
    costs = ctx.layer_costs + flops.head_costs(ctx.feature_dims, config.head_units, ctx.num_classes)
    phases = [(n, p.trainable_layers) for n, p in zip(result.phase_epochs, plan.phases)]
    trial.set_user_attr(
        "train_flops", flops.trial_flops(costs, phases, len(ctx.train[1]), len(ctx.val[1]))
    )
    if result.stopped == "pruned":
        trial.set_user_attr("pruned_at_epoch", len(per_epoch))
        raise optuna.TrialPruned(f"pruned after epoch {len(per_epoch)}")
    return result.best_val_accuracy


class Progress:
    """Optuna callback: one line per finished trial with the best so far."""

    def __init__(self, backbone: str, quota: budget.Budget, max_failures: int):
        self.backbone, self.quota, self.max_failures = backbone, quota, max_failures
        self.consecutive_failures = 0

    def __call__(self, study, trial) -> None:
        done = self.quota.describe(study.get_trials(deepcopy=False))
        state = trial.state.name
        if state == "FAIL":
            self.consecutive_failures += 1
            detail = trial.user_attrs.get("fail_reason", "see the log above")
        elif state == "PRUNED":
            self.consecutive_failures = 0
            epochs = trial.user_attrs.get("val_accuracy_per_epoch", [0.0])
            detail = (
                f"stopped after epoch {len(epochs)} at val_acc {max(epochs):.3f} | "
                f"{trial.params['strategy']}: {trial.user_attrs.get('plan')}"
            )
        else:
            self.consecutive_failures = 0
            detail = (
                f"val_acc {trial.value:.3f} | {trial.params['strategy']}: "
                f"{trial.user_attrs.get('plan')} | head "
                f"{trial.params['head_units']} | lr {trial.params['learning_rate']:.1e} | "
                f"{trial.user_attrs.get('device_seconds', 0):.1f} s"
            )
        best = _best_trial(study)
        best_text = f"best {best.value:.3f} (trial {best.number})" if best else "no best yet"
        print(
            f"[sweep {self.backbone} {done}] trial {trial.number} {state}: {detail} || {best_text}",
            file=sys.stderr,
            flush=True,
        )
        if self.consecutive_failures >= self.max_failures:
            study.stop()
            raise ThawError(
                f"sweep {self.backbone}: {self.consecutive_failures} trials failed in a row; "
                f"the last one: {detail}. Check the search space and data, then re-run: "
                "finished trials are kept."
            )


def _best_trial(study):
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return max(complete, key=lambda t: t.value) if complete else None


def make_pruner(spec: PrunerParams, epochs: int, min_per_strategy: int = 0):
    """The pruner from params, fair to phased strategies (pruning.py): median within a
    strategy (default), hyperband after the last phase's warm-up, or none.

    The median rule waits for a strategy's `min_per_strategy` completed trials too: the
    stratified start-up trials then run in full, so coverage costs no pruned trials.
    """
    import optuna

    if spec.kind == "median":
        startup = max(spec.startup_trials, min_per_strategy)
        return pruning.StrategyMedianPruner(startup, spec.warmup_epochs)
    if spec.kind == "hyperband":
        inner = optuna.pruners.HyperbandPruner(
            min_resource=max(1, spec.warmup_epochs), max_resource=epochs
        )
        return pruning.PhaseGate(inner, spec.warmup_epochs)
    return optuna.pruners.NopPruner()


def open_study(name: str, params: Params, meta: dict):
    import optuna

    url = studies.storage_url(params.sweep.storage, name)
    study_name = studies.study_name(
        name,
        meta["sha256"],
        data.file_digest(MANIFEST),
        effective_search(params, name),
        params.seed,
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=studies.open_storage(url),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=make_pruner(
            params.sweep.pruner, params.search.epochs, params.sweep.min_trials_per_strategy
        ),
        load_if_exists=True,
    )
    studies.write_pointer(name, study_name, url)
    return study


def sweep(name: str, params: Params, manifest: dict):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = load_context(name, params, manifest)
    meta = ctx.meta
    study = open_study(name, params, meta)
    quota = budget.Budget.of(params)
    progress = Progress(name, quota, params.sweep.max_failures)
    already = studies.count_finished(study)
    if already:
        print(
            f"[sweep {name}] resuming study {study.study_name}: {already} finished trials kept",
            file=sys.stderr,
        )
    while not quota.done(trials := study.get_trials(deepcopy=False)):
        strategy = quota.next_strategy(trials)
        if strategy is not None and not any(t.state.name == "WAITING" for t in trials):
            study.enqueue_trial({"strategy": strategy})  # stratified start-up (budget.py)
        study.optimize(
            lambda trial: run_trial(trial, ctx),
            n_trials=1,
            catch=(Exception,),
            callbacks=[progress],
        )
    stats = ctx.cache.stats
    print(
        f"[sweep {name}] activation cache: {stats.computed} cuts computed in "
        f"{stats.seconds:.1f} s, {stats.memory_hits} memory and {stats.disk_hits} disk hits, "
        f"{stats.memory_bytes / MB:.1f} MB in memory, {stats.disk_bytes / MB:.1f} MB written; "
        f"train steps: {ctx.pool.stats.traced} traced, {ctx.pool.stats.reused} reused",
        file=sys.stderr,
    )
    return study, meta


def write_results(name: str, study, meta: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    table = studies.trials_table(study, name)
    table.to_csv(out / "trials.csv", index=False)
    best = _best_trial(study)
    if best is None:
        raise ThawError(f"sweep {name}: no trial completed; see fail_reason in trials.csv")
    row = table[table.trial == best.number].iloc[0]
    summary = {
        "backbone": name,
        "arch": meta["arch"],
        "weights": meta["weights"],
        "study_name": study.study_name,
        "trial": int(best.number),
        "params": best.params,
        "strategy": best.params.get("strategy"),
        "plan": best.user_attrs.get("plan"),
        "val_accuracy": float(best.value),
        "trainable_params": int(row.trainable_params),
        "max_trainable_params": int(row.max_trainable_params),
        "total_params": int(row.total_params),
        "device": row.device,
        "device_kind": row.device_kind,
        "device_seconds": float(row.device_seconds),
        "trials": table.state.value_counts().to_dict(),
    }
    (out / "best.json").write_text(json.dumps(summary, indent=1) + "\n")
    importances = studies.importances(study, seed=0)
    (out / "importances.json").write_text(json.dumps(importances, indent=1) + "\n")
    return summary


def main() -> None:
    name, params = backbone_stage_args(__doc__)
    manifest = data.read_manifest(MANIFEST)
    study, meta = sweep(name, params, manifest)
    summary = write_results(name, study, meta, RESULTS_DIR / name)
    print(
        f"sweep {name}: best val accuracy {summary['val_accuracy']:.3f} with "
        f"{summary['plan']}, {summary['trainable_params']:,} trainable parameters"
    )


if __name__ == "__main__":
    run_main(main)
