"""One trial: its configuration suggested, trained with per-epoch reports to the
pruner, and its costs recorded; and one line per finished trial.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass

from pipeline import progress
from pipeline.config import SearchParams
from pipeline.data import augment
from pipeline.errors import ThawError
from pipeline.models import flops, strategies
from pipeline.search import budget, pruning
from pipeline.train import phases
from pipeline.train.context import Contexts, RunContext
from pipeline.train.pool import release_memory


@dataclass(frozen=True)
class TrialConfig:
    image_size: int
    augmentation: str
    head_units: int
    dropout: float
    learning_rate: float
    plan: strategies.StrategyPlan
    class_weight: str = "none"  # loop.CLASS_WEIGHTS


def suggest_size(trial, sizes: list[int]) -> int:
    """The input size first: it picks the context (backbone and data at that size)."""
    return int(trial.suggest_categorical("image_size", list(sizes)))


def suggest(trial, search: SearchParams, info: strategies.BackboneInfo, size: int) -> TrialConfig:
    """Every suggestion of a trial after its size; a strategy's own only when it was chosen."""
    augmentation = trial.suggest_categorical("augmentation", search.augmentation)
    head_units = trial.suggest_categorical("head_units", search.head_units)
    dropout = 0.0
    if head_units > 0:
        dropout = trial.suggest_float(
            "head_dropout", search.head_dropout.low, search.head_dropout.high
        )
    r = search.learning_rate
    learning_rate = trial.suggest_float("learning_rate", r.low, r.high, log=True)
    plan = strategies.suggest_plan(trial, search, info, learning_rate)
    # suggested only when searched: a fixed choice leaves the sampler's draws as they were
    choices = search.class_weight
    weight = trial.suggest_categorical("class_weight", choices) if len(choices) > 1 else choices[0]
    return TrialConfig(size, augmentation, head_units, dropout, learning_rate, plan, weight)


def weighted(trial) -> bool:
    return trial.user_attrs.get("class_weight", "none") != "none"


def recorded_size(row) -> int | None:
    """The input size a trials.csv row ran at (None: a study from before sizes were searched)."""
    size = json.loads(row["params"]).get("image_size")
    return None if size is None else int(size)


def recorded_config(row, ctx: RunContext) -> TrialConfig:
    """A recorded trial's configuration (a trials.csv row), rebuilt as the sweep built it;
    `ctx` is the context at the row's size."""
    import optuna

    params = {"image_size": ctx.size, "augmentation": augment.NONE, **json.loads(row["params"])}
    return suggest(optuna.trial.FixedTrial(params), ctx.search, ctx.info, ctx.size)


def context_for(row, contexts: Contexts) -> RunContext:
    size = recorded_size(row)
    return contexts.first if size is None else contexts[size]


def run_trial(trial, contexts: Contexts) -> float:
    """Objective: best validation accuracy over the trial's epochs.

    Reports the best-so-far accuracy after each epoch; a pruner's stop is
    recorded (`pruned_at_epoch`) and raised as TrialPruned after the costs are.
    """
    import optuna

    release_memory()  # cheap: load_context froze everything alive before the first trial
    size = suggest_size(trial, contexts.sizes)
    ctx = contexts[size]
    ctx.restore()
    config = suggest(trial, ctx.search, ctx.info, size)
    plan = config.plan
    trial.set_user_attr("strategy", plan.strategy)
    trial.set_user_attr("frozen_fraction", plan.frozen_fraction)
    trial.set_user_attr("fine_tunes", plan.fine_tunes)
    trial.set_user_attr("phases", len(plan.phases))
    trial.set_user_attr("plan", plan.description)
    trial.set_user_attr("class_weight", config.class_weight)
    per_epoch: list[float] = []
    if len(plan.phases) == 1:
        trial.set_user_attr(pruning.LAST_PHASE_FROM, 0)

    def on_epoch(epoch: int, accuracy: float) -> bool:
        per_epoch.append(accuracy)
        trial.report(max(per_epoch), epoch)  # the pruner's input: one database write an epoch
        return trial.should_prune()

    def on_phase_end(index: int, _step) -> None:
        if index + 2 == len(plan.phases):  # the last phase starts now: the pruner may judge it
            trial.set_user_attr(pruning.LAST_PHASE_FROM, len(per_epoch))

    try:
        seed = ctx.seed + trial.number
        head = ctx.pool.head(config.head_units, config.dropout, seed)
        model = ctx.pool.model(0, head)
        result = phases.train_plan(
            model,
            ctx.backbone,
            plan,
            ctx.training("train", config.augmentation, seed),
            ctx.val,
            batch_size=ctx.search.batch_size,
            seed=seed,
            on_epoch=on_epoch,
            on_phase_end=on_phase_end,
            cache=ctx.cache,
            pool=ctx.pool,
            patience_for=ctx.search.patience_for,
            class_weights=ctx.class_weights(config.class_weight, "train"),
        )
    except Exception as exc:
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:  # once, not per epoch: each write is a database round trip
        trial.set_user_attr("val_accuracy_per_epoch", per_epoch)
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
        "val_correct",  # for the report's bootstrap of how stable its pick is
        "val_loss",  # ranks trials tied on val accuracy (evaluate/ranking.by_rank)
    ):
        trial.set_user_attr(key, getattr(result, key))
    costs = ctx.layer_costs + flops.head_costs(ctx.feature_dims, config.head_units, ctx.num_classes)
    epochs_trained = [(n, p.trainable_layers) for n, p in zip(result.phase_epochs, plan.phases)]
    trial.set_user_attr(
        "train_flops", flops.trial_flops(costs, epochs_trained, len(ctx.train[1]), len(ctx.val[1]))
    )
    if result.stopped == "pruned":
        trial.set_user_attr("pruned_at_epoch", len(per_epoch))
        raise optuna.TrialPruned(f"pruned after epoch {len(per_epoch)}")
    return result.best_val_accuracy


class Progress:
    """Optuna callback: one line per finished trial with the best so far."""

    def __init__(self, backbone: str, quota: budget.Budget, max_failures: int, who: str = ""):
        self.backbone, self.quota, self.max_failures = backbone, quota, max_failures
        self.who = who
        self.consecutive_failures = 0
        self.start, self.seen = time.monotonic(), 0

    def left(self, trials) -> str:
        """Time left at this process's pace so far: the trials the budget still wants
        (overall and each strategy's minimum) times the mean seconds of a finished one."""
        complete, _, finished = self.quota.counts(trials)
        wanted = max(
            self.quota.completed - sum(complete.values()),
            sum(max(0, self.quota.minimum(s) - complete[s]) for s in self.quota.strategies),
        )
        wanted = min(wanted, self.quota.cap - finished)
        if wanted <= 0:
            return ""
        per_trial = (time.monotonic() - self.start) / self.seen
        return f", ~{progress.eta(wanted * per_trial)} left"

    def __call__(self, study, trial) -> None:
        trials = study.get_trials(deepcopy=False)
        self.seen += 1
        done = self.quota.describe(trials) + self.left(trials)
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
                f"{trial.user_attrs.get('plan')} | {trial.params.get('image_size')} px, "
                f"aug {trial.params.get('augmentation')}"
                f"{' | classes balanced' if weighted(trial) else ''} | head "
                f"{trial.params['head_units']} | lr {trial.params['learning_rate']:.1e} | "
                f"{trial.user_attrs.get('device_seconds', 0):.1f} s"
            )
        best = budget.best_trial(trials)
        best_text = f"best {best.value:.3f} (trial {best.number})" if best else "no best yet"
        print(
            f"[sweep {self.backbone} {done}] trial {trial.number} {state} on {self.who}: "
            f"{detail} || {best_text}",
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
