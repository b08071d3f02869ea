"""What a sweep's budget counts, and which strategy the next trial must try.

`sweep.n_trials` counts **completed** trials: asking for more trials gives more
evidence, however many the pruner stops. Pruned trials come on top, up to
`sweep.max_trials` finished (completed + pruned) in all, so a search whose every
trial is pruned still ends. Until every strategy of `search.strategies` has
`sweep.min_trials_per_strategy` completed trials, the next trial is assigned to
the strategy furthest behind (stratified start-up); after that the sampler
chooses freely. `surgical` start-up trials take every window start in turn (and
need at least one trial per start), so no block goes untried before TPE exploits:
left alone it put 14 of 24 trials on the last segment and none on the first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from pipeline.config import Params

COMPLETE, PRUNED, RUNNING, WAITING = "COMPLETE", "PRUNED", "RUNNING", "WAITING"


def strategy_of(trial) -> str | None:
    """The trial's strategy: drawn, or fixed by an enqueue that has not run yet."""
    return _param(trial, "strategy")


def _param(trial, name: str):
    """A trial's value of `name`: drawn, or fixed by an enqueue that has not run yet."""
    if name in trial.params:
        return trial.params[name]
    return trial.system_attrs.get("fixed_params", {}).get(name)


def best_trial(trials):
    """The completed trial with the highest value, or None; ties as the final stage ranks
    them (evaluate/ranking.by_rank): lower validation loss, fewer trainable parameters,
    the earlier trial."""
    complete = [t for t in trials if t.state.name == COMPLETE]
    return min(complete, key=_rank_key) if complete else None


def _rank_key(trial) -> tuple:
    loss = trial.user_attrs.get("val_loss")
    loss = math.inf if loss is None or math.isnan(loss) else loss
    params = trial.user_attrs.get("trainable_params") or 0
    return (-trial.value, loss, params, trial.number)


@dataclass(frozen=True)
class Budget:
    completed: int  # completed trials wanted
    per_strategy: int  # completed trials each strategy needs at least
    cap: int  # finished trials (completed + pruned) at most
    strategies: tuple[str, ...]
    starts: int = 0  # surgical window starts (the backbone's segments) the start-up covers

    @classmethod
    def of(cls, params: Params, starts: int = 0) -> Budget:
        sweep = params.sweep
        return cls(
            sweep.n_trials,
            sweep.min_trials_per_strategy,
            sweep.trial_cap,
            tuple(params.search.strategies),
            starts,
        )

    def minimum(self, strategy: str) -> int:
        """Completed trials `strategy` needs before the sampler chooses freely."""
        return max(self.per_strategy, self.starts) if strategy == "surgical" else self.per_strategy

    def counts(self, trials, pending: bool = False) -> tuple[Counter, Counter, int]:
        """Completed trials per strategy, trials tried per strategy, finished in all.

        `pending`: count running and queued trials as if they had completed, which is
        what a worker deciding whether to start one more needs (budget overshoot).
        """
        complete, tried, finished = Counter(), Counter(), 0
        counted = (COMPLETE, RUNNING, WAITING) if pending else (COMPLETE,)
        for t in trials:
            strategy = strategy_of(t)
            tried[strategy] += 1
            complete[strategy] += t.state.name in counted
            finished += t.state.name in (PRUNED, *counted)
        return complete, tried, finished

    def done(self, trials, pending: bool = False) -> bool:
        complete, _, finished = self.counts(trials, pending)
        covered = all(complete[s] >= self.minimum(s) for s in self.strategies)
        return finished >= self.cap or (sum(complete.values()) >= self.completed and covered)

    def next_strategy(self, trials, pending: bool = False) -> str | None:
        """The strategy short of its minimum with the fewest completed, then tried; or None."""
        complete, tried, _ = self.counts(trials, pending)
        short = [s for s in self.strategies if complete[s] < self.minimum(s)]
        if not short:
            return None
        return min(short, key=lambda s: (complete[s], tried[s], self.strategies.index(s)))

    def fixed_params(self, trials, strategy: str) -> dict:
        """What a start-up trial of `strategy` is enqueued with: the strategy and, for
        `surgical`, the first window start no trial has tried yet (queued ones count)."""
        fixed: dict = {"strategy": strategy}
        if strategy == "surgical" and self.starts:
            tried = {_param(t, "surgical_start") for t in trials if strategy_of(t) == strategy}
            fresh = [s for s in range(self.starts) if s not in tried]
            if fresh:
                fixed["surgical_start"] = fresh[0]
        return fixed

    def describe(self, trials) -> str:
        complete, _, finished = self.counts(trials)
        pruned = finished - sum(complete.values())
        return (
            f"{sum(complete.values())}/{self.completed} complete, {pruned} pruned "
            f"(cap {self.cap} finished)"
        )
