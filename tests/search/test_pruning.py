"""Fair pruning and the budget: phased strategies are judged on their last phase, against
their own kind; every strategy gets its completed trials; the budget counts completed ones."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from pipeline.search import budget, pruning

STRATEGIES = ["freeze_depth", "lp_ft"]
SPACE = {"strategy": CategoricalDistribution(STRATEGIES)}
EPOCHS, PROBE = 20, 10  # lp_ft probes for half the epochs


def completed(study, strategy: str, curve: list[float], last_phase_from: int) -> None:
    best = [max(curve[: i + 1]) for i in range(len(curve))]  # the objective reports best-so-far
    study.add_trial(
        optuna.trial.create_trial(
            params={"strategy": strategy},
            distributions=SPACE,
            value=best[-1],
            intermediate_values=dict(enumerate(best)),
            user_attrs={pruning.LAST_PHASE_FROM: last_phase_from},
        )
    )


def run(study, strategy: str, curve: list[float], phases: list[int]) -> int | None:
    """Report a trial's curve as the sweep does; the epoch it was pruned at, or None."""
    study.enqueue_trial({"strategy": strategy})  # as the sweep assigns a strategy
    trial = study.ask(SPACE)
    assert trial.params["strategy"] == strategy
    starts = [sum(phases[:i]) for i in range(len(phases))]
    if len(phases) == 1:
        trial.set_user_attr(pruning.LAST_PHASE_FROM, 0)
    best = 0.0
    for epoch, accuracy in enumerate(curve):
        if len(phases) > 1 and epoch == starts[-1]:
            trial.set_user_attr(pruning.LAST_PHASE_FROM, epoch)
        best = max(best, accuracy)
        trial.report(best, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, best)
    return None


def fine_tunes_fast() -> list[float]:
    return [0.80] * EPOCHS


def lp_ft_curve(probe: float, tuned: float) -> list[float]:
    return [probe] * PROBE + [tuned] * (EPOCHS - PROBE)


@pytest.fixture
def study():
    """Five full fine-tunes at 0.80 from the first epoch, three LP-FT trials ending at 0.70."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    for _ in range(5):
        completed(study, "freeze_depth", fine_tunes_fast(), 0)
    for _ in range(3):
        completed(study, "lp_ft", lp_ft_curve(0.30, 0.70), PROBE)
    return study


def test_the_old_rule_prunes_an_lp_ft_trial_that_ends_best_during_its_probe(study):
    study.pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)
    assert run(study, "lp_ft", lp_ft_curve(0.30, 0.95), [PROBE, PROBE]) == 5  # still probing


def test_the_fair_rule_lets_it_fine_tune_and_it_ends_best(study):
    study.pruner = pruning.StrategyMedianPruner(startup_trials=3, warmup_epochs=5)
    assert run(study, "lp_ft", lp_ft_curve(0.30, 0.95), [PROBE, PROBE]) is None
    assert study.best_value == pytest.approx(0.95)


def test_the_fair_rule_still_prunes_a_bad_fine_tune_after_its_warmup(study):
    study.pruner = pruning.StrategyMedianPruner(startup_trials=3, warmup_epochs=5)
    assert run(study, "lp_ft", lp_ft_curve(0.30, 0.40), [PROBE, PROBE]) == PROBE + 5
    assert run(study, "freeze_depth", [0.5] * EPOCHS, [EPOCHS]) == 5  # against its own kind


def test_a_strategy_with_too_few_completed_trials_is_not_pruned(study):
    study.pruner = pruning.StrategyMedianPruner(startup_trials=4, warmup_epochs=5)
    assert run(study, "lp_ft", lp_ft_curve(0.30, 0.40), [PROBE, PROBE]) is None  # 3 < 4 peers


def test_an_early_stopped_peer_counts_with_the_value_it_ended_on():
    trial = SimpleNamespace(intermediate_values={0: 0.5, 1: 0.7})
    assert pruning.best_so_far(trial, 5) == 0.7 and pruning.best_so_far(trial, 0) == 0.5


def fake(strategy: str, state: str):
    return SimpleNamespace(params={"strategy": strategy}, state=SimpleNamespace(name=state))


def test_the_budget_counts_completed_trials_and_covers_every_strategy():
    quota = budget.Budget(completed=4, per_strategy=2, cap=10, strategies=("a", "b"))
    trials = [fake("a", "COMPLETE"), fake("a", "COMPLETE"), fake("a", "COMPLETE")]
    assert not quota.done(trials) and quota.next_strategy(trials) == "b"
    trials += [fake("b", "PRUNED"), fake("b", "COMPLETE")]
    assert not quota.done(trials) and quota.next_strategy(trials) == "b"  # pruned: not counted
    trials += [fake("b", "COMPLETE")]
    assert quota.done(trials) and quota.next_strategy(trials) is None
    assert quota.describe(trials) == "5/4 complete, 1 pruned (cap 10 finished)"


def test_the_budget_stops_at_its_cap_when_every_trial_is_pruned():
    quota = budget.Budget(completed=4, per_strategy=1, cap=3, strategies=("a",))
    assert not quota.done([fake("a", "PRUNED")] * 2)
    assert quota.done([fake("a", "PRUNED")] * 3)


def test_the_next_strategy_is_the_one_furthest_behind_then_least_tried():
    quota = budget.Budget(completed=6, per_strategy=2, cap=20, strategies=("a", "b", "c"))
    trials = [fake("a", "COMPLETE"), fake("b", "COMPLETE"), fake("b", "FAIL")]
    assert quota.next_strategy(trials) == "c"
    trials.append(fake("c", "COMPLETE"))
    assert quota.next_strategy(trials) == "a"  # a and c have one each; a comes first


def test_surgical_start_up_tries_every_window_start_before_the_sampler_chooses():
    quota = budget.Budget(completed=4, per_strategy=2, cap=20, strategies=("a", "surgical"),
                          starts=3)  # fmt: skip
    assert quota.minimum("surgical") == 3 and quota.minimum("a") == 2

    def surgical(start: int, state: str = "COMPLETE", queued: bool = False):
        chosen = {"strategy": "surgical", "surgical_start": start}
        return SimpleNamespace(
            params={} if queued else chosen,
            system_attrs={"fixed_params": chosen} if queued else {},
            state=SimpleNamespace(name="WAITING" if queued else state),
        )

    trials = [fake("a", "COMPLETE"), fake("a", "COMPLETE")]
    assert quota.fixed_params(trials, "surgical") == {"strategy": "surgical", "surgical_start": 0}
    trials += [surgical(0, "PRUNED"), surgical(2, queued=True)]  # tried, even if not completed
    assert quota.fixed_params(trials, "surgical")["surgical_start"] == 1
    trials += [surgical(1), surgical(2), surgical(0)]
    assert quota.fixed_params(trials, "surgical") == {"strategy": "surgical"}  # all covered
    assert quota.fixed_params(trials, "a") == {"strategy": "a"}
    two_complete = trials[:2] + [surgical(1), surgical(0)]
    assert not quota.done(two_complete) and quota.next_strategy(two_complete) == "surgical"
