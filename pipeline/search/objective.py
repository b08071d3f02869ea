"""One trial: its configuration suggested (search/space.py), run by the one seam
(train/runner.py) with per-epoch reports to the pruner, and its costs recorded; and one
line per finished trial.
"""

from __future__ import annotations

import sys
import time

from pipeline import progress
from pipeline.errors import ThawError
from pipeline.models import strategies
from pipeline.search import budget, pruning, space
from pipeline.train import runner
from pipeline.train.context import Contexts
from pipeline.train.pool import release_memory


def weighted(trial) -> bool:
    return trial.user_attrs.get("class_weight", "none") != "none"


RESULT_ATTRS = (
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
)


def run_trial(trial, contexts: Contexts) -> float:
    """Objective: best validation accuracy over the trial's epochs.

    Reports the best-so-far accuracy after each epoch; a pruner's stop is
    recorded (`pruned_at_epoch`) and raised as TrialPruned after the costs are.
    """
    import optuna

    release_memory()  # cheap: load_context froze everything alive before the first trial
    ctx = contexts[space.suggest_size(trial, contexts.sizes)]
    config = space.suggest(trial, ctx.search, ctx.info, ctx.size)
    plan = runner.plan_of(ctx, config)
    _record_plan(trial, plan, config.class_weight)
    per_epoch: list[float] = []
    try:
        outcome = runner.run(ctx, config, ctx.seed + trial.number, plan=plan,
                             **_listeners(trial, plan, per_epoch))  # fmt: skip
    except Exception as exc:
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:  # once, not per epoch: each write is a database round trip
        trial.set_user_attr("val_accuracy_per_epoch", per_epoch)
    for key in RESULT_ATTRS:
        trial.set_user_attr(key, getattr(outcome.result, key))
    trial.set_user_attr("train_flops", outcome.train_flops)
    if outcome.result.stopped == "pruned":
        trial.set_user_attr("pruned_at_epoch", len(per_epoch))
        raise optuna.TrialPruned(f"pruned after epoch {len(per_epoch)}")
    return outcome.result.best_val_accuracy


def _record_plan(trial, plan: strategies.StrategyPlan, class_weight: str) -> None:
    trial.set_user_attr("strategy", plan.strategy)
    trial.set_user_attr("frozen_fraction", plan.frozen_fraction)
    trial.set_user_attr("fine_tunes", plan.fine_tunes)
    trial.set_user_attr("phases", len(plan.phases))
    trial.set_user_attr("plan", plan.description)
    trial.set_user_attr("class_weight", class_weight)
    if len(plan.phases) == 1:
        trial.set_user_attr(pruning.LAST_PHASE_FROM, 0)


def _listeners(trial, plan: strategies.StrategyPlan, per_epoch: list[float]) -> dict:
    """The pruner's per-epoch report, and where the last phase starts (it judges only that)."""

    def on_epoch(epoch: int, accuracy: float) -> bool:
        per_epoch.append(accuracy)
        trial.report(max(per_epoch), epoch)  # the pruner's input: one database write an epoch
        return trial.should_prune()

    def on_phase_end(index: int, _step) -> None:
        if index + 2 == len(plan.phases):  # the last phase starts now: the pruner may judge it
            trial.set_user_attr(pruning.LAST_PHASE_FROM, len(per_epoch))

    return {"on_epoch": on_epoch, "on_phase_end": on_phase_end}


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
