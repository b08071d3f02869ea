"""One way to run a configuration: a context and a `RunConfig` in, a trained model's scores
and costs out.

The search's trials, the final stage's retraining and the freeze-depth curve all run a
configuration of one backbone; they differ only in what they train on and are scored
on (`Fit`) and in who listens to the epochs. Whatever calls it (a screen, an export)
gets the same training, the same parameter counts and the same FLOPs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.data.datasets import TRAINVAL
from pipeline.models import flops, strategies
from pipeline.models.configuration import RunConfig
from pipeline.models.strategies import StrategyPlan
from pipeline.train import phases
from pipeline.train.context import RunContext


@dataclass(frozen=True)
class Fit:
    """What a run trains on, and whether it is validated each epoch or tested once."""

    split: str  # the training split
    validate: bool  # per-epoch validation accuracy, early stopping, a pruner's input
    test: bool  # the test split, evaluated once after the last phase


SEARCH = Fit("train", validate=True, test=False)  # a trial: train, validated per epoch
FINAL = Fit(TRAINVAL, validate=False, test=True)  # a retraining: train+val, tested once


@dataclass(frozen=True)
class Outcome:
    result: phases.TrainResult
    plan: StrategyPlan  # what ran
    train_flops: int  # analytical: forward over the model, backward through what trains


def run(
    ctx: RunContext,
    config: RunConfig,
    seed: int,
    fit: Fit = SEARCH,
    *,
    plan: StrategyPlan | None = None,
    on_epoch: Callable[[int, float], bool] | None = None,
    on_phase_end: Callable | None = None,
    on_trained: Callable | None = None,
) -> Outcome:
    """Train `config` from the backbone's pretrained weights with `seed` (the head's
    initialisation and the batch order), as `fit` says.

    `plan` replaces the configuration's own plan (a retraining replays the epochs the
    trial ran); `on_epoch(epoch, val_accuracy)` returns True to stop (a pruner);
    `on_trained(head)` runs while the backbone and `head` hold the trained weights.
    """
    ctx.restore()
    plan = plan or plan_of(ctx, config)
    head = ctx.pool.head(config.head_units, config.dropout, seed)
    val = ctx.val if fit.validate else None
    result = phases.train_plan(
        ctx.pool.model(0, head),
        ctx.backbone,
        plan,
        ctx.training(fit.split, config.augmentation, seed),
        val,
        batch_size=ctx.search.batch_size,
        seed=seed,
        on_epoch=on_epoch,
        on_phase_end=on_phase_end,
        cache=ctx.cache,
        pool=ctx.pool,
        patience_for=ctx.search.patience_for if fit.validate else None,
        test=ctx.splits["test"] if fit.test else None,
        split_names=(fit.split, "val", "test"),
        class_weights=ctx.class_weights(config.class_weight, fit.split),
    )
    if on_trained is not None:
        on_trained(head)
    return Outcome(result, plan, run_flops(ctx, config, plan, result, fit))


def plan_of(ctx: RunContext, config: RunConfig) -> StrategyPlan:
    """The configuration's strategy as a plan over this context's backbone."""
    return strategies.plan(config.strategy, ctx.search, ctx.info, config.learning_rate)


def run_flops(ctx: RunContext, config: RunConfig, plan, result, fit: Fit) -> int:
    """The run's training FLOPs for the epochs each phase ran (a pruned trial's too)."""
    costs = ctx.layer_costs + flops.head_costs(ctx.feature_dims, config.head_units, ctx.num_classes)
    epochs_trained = [(n, p.trainable_layers) for n, p in zip(result.phase_epochs, plan.phases)]
    n_val = len(ctx.val[1]) if fit.validate else 0
    return flops.trial_flops(costs, epochs_trained, len(ctx.splits[fit.split][1]), n_val)
