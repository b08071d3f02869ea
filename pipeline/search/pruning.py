"""Pruning that is fair to every strategy: a trial is judged only against its own kind.

Optuna's MedianPruner compares a trial's accuracy at epoch t with every
completed trial's at epoch t. Across freezing strategies that is unfair: an
`lp_ft` trial is still a linear probe at epoch 6 of 20, and a `gradual` one has
unfrozen two segments, so against full fine-tunes at the same epoch they look
worse than they will end, and were pruned before their fine-tuning began. Two
rules fix it:

- a trial is compared only with completed trials of **its own strategy** (the
  median of their best-so-far accuracy at the same epoch), and only once that
  strategy has `startup_trials` completed trials;
- a phased strategy is not judged before its **last phase** has run
  `warmup_epochs` epochs (a single-phase trial: before `warmup_epochs`), so
  what is judged is the phase that decides its result.

The objective tells the pruner where the last phase started by setting the
trial's `LAST_PHASE_FROM` attribute when that phase begins.
"""

from __future__ import annotations

import statistics

import optuna

from pipeline.config import PrunerParams

LAST_PHASE_FROM = "last_phase_from"  # 0-based epoch at which the trial's last phase began


def past_warmup(trial, warmup_epochs: int) -> bool:
    """Whether the trial's last phase has run `warmup_epochs` epochs before this step."""
    step, start = trial.last_step, trial.user_attrs.get(LAST_PHASE_FROM)
    return step is not None and start is not None and step - start >= warmup_epochs


def best_so_far(trial, step: int) -> float | None:
    """The trial's reported value at `step`, or its last one before it.

    A trial that early stopping ended keeps its best: it counts at later epochs
    with the value it ended on, not as missing.
    """
    reached = [s for s in trial.intermediate_values if s <= step]
    return trial.intermediate_values[max(reached)] if reached else None


class StrategyMedianPruner(optuna.pruners.BasePruner):
    """Median rule within a strategy, after the last phase's warm-up (module docstring)."""

    def __init__(self, startup_trials: int, warmup_epochs: int):
        self.startup_trials, self.warmup_epochs = startup_trials, warmup_epochs

    def prune(self, study, trial) -> bool:
        if not past_warmup(trial, self.warmup_epochs):
            return False
        strategy = trial.params.get("strategy")
        peers = [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.params.get("strategy") == strategy
        ]
        if len(peers) < max(self.startup_trials, 1):
            return False
        step = trial.last_step
        reference = [v for v in (best_so_far(t, step) for t in peers) if v is not None]
        return bool(reference) and trial.intermediate_values[step] < statistics.median(reference)


class PhaseGate(optuna.pruners.BasePruner):
    """Another pruner, asked only once the trial's last phase has run its warm-up."""

    def __init__(self, inner, warmup_epochs: int):
        self.inner, self.warmup_epochs = inner, warmup_epochs

    def prune(self, study, trial) -> bool:
        return past_warmup(trial, self.warmup_epochs) and self.inner.prune(study, trial)


def make_pruner(spec: PrunerParams, epochs: int, min_per_strategy: int = 0):
    """The pruner from params, fair to phased strategies (above): median within a
    strategy (default), hyperband after the last phase's warm-up, or none.

    The median rule waits for a strategy's `min_per_strategy` completed trials too: the
    stratified start-up trials then run in full, so coverage costs no pruned trials.
    """
    import optuna

    if spec.kind == "median":
        startup = max(spec.startup_trials, min_per_strategy)
        return StrategyMedianPruner(startup, spec.warmup_epochs)
    if spec.kind == "hyperband":
        inner = optuna.pruners.HyperbandPruner(
            min_resource=max(1, spec.warmup_epochs), max_resource=epochs
        )
        return PhaseGate(inner, spec.warmup_epochs)
    return optuna.pruners.NopPruner()
