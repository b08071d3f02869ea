"""The report's tables, computed from the stages' results (results.py): frames, not words.

The headline table has one row per retrained configuration and baseline:
test accuracy mean and sd over seeds, its validation accuracy (what the search
ranked it by), its costs (training, and running: size and latency from the export
stage), and whether it lies on a Pareto front (nothing else is at least
as accurate and at most as costly) of test accuracy against trainable
parameters and against device time, within its backbone and overall. Beside it:
the verdicts against the baselines, the depth curve, the strategies' summary and
winners, the input sizes, and the few numbers of metrics.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from pipeline.evaluate.ranking import LINEAR_PIXELS, PROBE, SCRATCH, TRANSFER, by_rank
from pipeline.report.pareto import pareto_front
from pipeline.report.results import Results
from pipeline.report.statistics import ALPHA, compare, seeds_bits

COSTS = {"params": "trainable_params", "time": "device_seconds", "latency": "latency_b1_ms"}
# the export stage's running costs, joined to each transferred row by its architecture
RUNNING = ["keras_bytes", "latency_b1_ms", "latency_b1_min_ms", "latency_b1_max_ms",
           "latency_b32_ms", "latency_b32_min_ms", "latency_b32_max_ms"]  # fmt: skip
ARCHITECTURE = ["backbone", "image_size", "head_units"]


def _label(row) -> str:
    if row.strategy == PROBE:
        return "linear probe (converged)"
    if row.kind == TRANSFER:
        label = f"#{int(row['rank'])} (trial {int(row.trial)})"
        return label if row.top_k else f"{label}, best {row.strategy}"
    return {SCRATCH: "scratch baseline", LINEAR_PIXELS: "linear on pixels"}[row.kind]


UNSTABLE_SPREAD = 0.10  # seeds whose test accuracies span more than this: the result is luck


# Columns only transfer runs write, with what a table without any transfer run holds
ONLY_TRANSFER_COLUMNS = {"strategy": "", "frozen_fraction": math.nan, "top_k": True,
                         "strategy_best": False, "test_accuracy_train_only": math.nan,
                         "test_balanced_accuracy": math.nan, "image_size": math.nan,
                         "augmentation": "", "test_correct": "", "val_correct": "",
                         "val_loss": math.nan, "class_weight": "none"}  # fmt: skip


def headline(runs: pd.DataFrame, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per configuration: seeds aggregated, running costs joined (`costs`: the
    export stage's latency.csv; NaN without it), Pareto membership marked."""
    runs = runs.assign(rank=runs["rank"].fillna(0).astype(int))
    for column, default in ONLY_TRANSFER_COLUMNS.items():
        if column not in runs:  # no transfer run at all (every final stage failed)
            runs[column] = default
    keys = ["backbone", "kind", "rank"]
    table = (
        runs.groupby(keys, sort=False)
        .agg(
            trial=("trial", "first"),
            strategy=("strategy", "first"),
            top_k=("top_k", "first"),
            strategy_best=("strategy_best", "first"),
            plan=("plan", "first"),
            image_size=("image_size", "first"),
            augmentation=("augmentation", "first"),
            class_weight=("class_weight", "first"),
            frozen_fraction=("frozen_fraction", "first"),
            head_units=("head_units", "first"),
            learning_rate=("learning_rate", "first"),
            epochs=("epochs", "first"),  # retrained for: up to the selecting run's best epoch
            val_accuracy=("val_accuracy", "first"),
            test_accuracy_train_only=("test_accuracy_train_only", "first"),
            test_accuracy_mean=("test_accuracy", "mean"),
            test_accuracy_sd=("test_accuracy", "std"),
            test_accuracy_min=("test_accuracy", "min"),
            test_accuracy_max=("test_accuracy", "max"),
            test_balanced_accuracy_mean=("test_balanced_accuracy", "mean"),
            test_balanced_accuracy_sd=("test_balanced_accuracy", "std"),
            seeds=("test_accuracy", "count"),  # failed runs (NaN) do not count
            trainable_params=("trainable_params", "first"),
            total_params=("total_params", "first"),
            # the median: a new model's first seed also pays tracing and graph building
            device_seconds=("device_seconds", "median"),
            device=("device", "first"),
            device_kind=("device_kind", "first"),
            train_flops=("train_flops", "mean"),
            test_correct=("test_correct", seeds_bits),
            val_correct=("val_correct", "first"),
            val_loss=("val_loss", "first"),
        )
        .reset_index()
    )
    table["top_k"] = table.top_k.fillna(True).astype(bool)
    table["strategy_best"] = table.strategy_best.fillna(False).astype(bool)
    table["unstable"] = table.test_accuracy_max - table.test_accuracy_min > UNSTABLE_SPREAD
    table["configuration"] = [_label(r) for _, r in table.iterrows()]
    table = with_running_costs(table, costs)
    for short, cost in COSTS.items():
        overall = pareto_front(table, "test_accuracy_mean", cost)
        own = pareto_front(table, "test_accuracy_mean", cost, by="backbone")
        table[f"front_{short}_overall"] = overall
        table[f"front_{short}_backbone"] = own & (table.backbone != "")
    return table.sort_values(["test_accuracy_mean"], ascending=False, ignore_index=True)


def with_running_costs(table: pd.DataFrame, costs: pd.DataFrame | None) -> pd.DataFrame:
    """Each transferred row's architecture's size on disk and latency per image."""
    if costs is None or costs.empty:
        return table.assign(**{c: math.nan for c in RUNNING})
    keyed = costs[ARCHITECTURE + [c for c in RUNNING if c in costs]].astype(
        {"image_size": float, "head_units": float}
    )
    merged = table.astype({"image_size": float, "head_units": float}).merge(
        keyed, on=ARCHITECTURE, how="left"
    )
    return merged.assign(**{c: merged.get(c, math.nan) for c in RUNNING})


VERDICT_COLUMNS = ["backbone", "against", "gap", "se", "p", "verdict", "test"]


def against_baselines(table: pd.DataFrame, chosen) -> list[dict]:
    """Did transfer pay for `chosen`? It against its backbone's scratch twin and the linear
    baseline: "paid" / "lost" when `compare` rejects equal accuracy at ALPHA."""
    linear = table[table.kind == LINEAR_PIXELS]
    scratch = table[(table.kind == SCRATCH) & (table.backbone == chosen.backbone)]
    rows = []
    for name, other in (("scratch", scratch), ("linear on pixels", linear)):
        found = None if other.empty else compare(chosen, other.iloc[0])
        if found is None:
            continue
        gap, se, p, test = found
        verdict = "within noise" if p >= ALPHA else "paid" if gap > 0 else "lost"
        rows.append(
            {"backbone": chosen.backbone, "against": name, "gap": gap, "se": se, "p": p,
             "verdict": verdict, "test": test}
        )  # fmt: skip
    return rows


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Each backbone's winner against each baseline (`against_baselines`)."""
    rows = [
        r
        for _, chosen in backbone_winners(table).iterrows()
        for r in against_baselines(table, chosen)
    ]
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def depth_curve(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds per backbone, mode and depth."""
    return (
        curves.groupby(["backbone", "mode", "depth"], sort=False)
        .agg(
            frozen_fraction=("frozen_fraction", "first"),
            last_frozen_layer=("last_frozen_layer", "first"),
            val_accuracy_mean=("val_accuracy", "mean"),
            val_accuracy_sd=("val_accuracy", "std"),
            seeds=("val_accuracy", "count"),  # failed runs (NaN) do not count
            converged_probe_accuracy=("converged_probe_accuracy", "first"),
            pooled_features=("pooled_features", "first"),
            settings_trial=("settings_trial", "first"),
            head_units=("head_units", "first"),
            learning_rate=("learning_rate", "first"),
            lr_decay=("lr_decay", "first"),
            **(
                {"backbone_lr_fraction": ("backbone_lr_fraction", "first")}
                if "backbone_lr_fraction" in curves  # curves from before the fraction had none
                else {}
            ),
        )
        .reset_index()
    )


def backbone_winners(table: pd.DataFrame) -> pd.DataFrame:
    """Each backbone's winner on validation: its rank-1 trial, retrained. Not the
    recommendation (selection.recommendation), which competes every candidate."""
    return table[(table.kind == TRANSFER) & (table["rank"] == 1)]


def by_input(trials: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, input size and augmentation: the search's completed trials, their best
    and median validation accuracy and median device time (the cost grows with the size)."""
    done = trials[trials.state == "COMPLETE"].assign(
        augmentation=lambda t: t.augmentation.fillna("none") if "augmentation" in t else "none"
    )
    if "image_size" not in done or done.image_size.isna().all():
        return pd.DataFrame()
    return (
        done.groupby(["backbone", "image_size", "augmentation"], sort=True)
        .agg(
            trials=("trial", "count"),
            best_val=("val_accuracy", "max"),
            median_val=("val_accuracy", "median"),
            median_seconds=("device_seconds", "median"),
            median_gflops=("train_flops", "median"),
        )
        .reset_index()
    )


def strategy_winners(table: pd.DataFrame) -> pd.DataFrame:
    """Per backbone: the strategy whose best configuration scored highest on test, against
    the runner-up strategy, with the paired bootstrap's p over the same test images
    (`compare`; "within noise" when p >= ALPHA).

    The winner is the highest of several on the same test set, so a "wins" is optimistic
    by that selection; the report says so.
    """
    rows = []
    best = table[(table.kind == TRANSFER) & table.strategy_best & (table.seeds > 0)]
    for backbone, group in best.groupby("backbone", sort=False):
        ranked = group.sort_values("test_accuracy_mean", ascending=False)
        winner = ranked.iloc[0]
        row = {"backbone": backbone, "winner": winner.strategy, "mean": winner.test_accuracy_mean,
               "sd": winner.test_accuracy_sd, "seeds": int(winner.seeds), "runner_up": "",
               "runner_up_mean": math.nan, "runner_up_sd": math.nan, "gap": math.nan,
               "p": math.nan, "verdict": "only strategy", "test": ""}  # fmt: skip
        if len(ranked) > 1:
            second = ranked.iloc[1]
            found = compare(winner, second)
            gap, _, p, test = (
                found
                if found
                else (winner.test_accuracy_mean - second.test_accuracy_mean, math.nan, math.nan, "")
            )
            row.update(runner_up=second.strategy, runner_up_mean=second.test_accuracy_mean,
                       runner_up_sd=second.test_accuracy_sd, gap=gap, p=p, test=test,
                       verdict="wins" if p < ALPHA else "within noise")  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


FEW_TO_COMPARE = 5  # completed trials below which a strategy's best and median mean little


def strategy_summary(
    trials: pd.DataFrame, table: pd.DataFrame, strategies: list[str]
) -> pd.DataFrame:
    """Per backbone and strategy of the search: trials completed and pruned, best and median
    validation accuracy, the best trial's test accuracy over seeds, and whether there are
    too few completed trials to compare (fewer than FEW_TO_COMPARE)."""
    rows = []
    tested = table[(table.kind == TRANSFER) & table.strategy_best].set_index(
        ["backbone", "strategy"]
    )
    for backbone in trials.backbone.unique():
        own = trials[trials.backbone == backbone]
        for strategy in strategies:
            mine = own[own.strategy == strategy]
            done = by_rank(mine[mine.state == "COMPLETE"])  # ties name the retrained trial
            best = done.iloc[0] if len(done) else None
            key = (backbone, strategy)
            test = tested.loc[key] if key in tested.index else None
            rows.append(
                {
                    "backbone": backbone,
                    "strategy": strategy,
                    "completed": len(done),
                    "pruned": int((mine.state == "PRUNED").sum()),
                    "failed": int((mine.state == "FAIL").sum()),
                    "best_val": math.nan if best is None else best.val_accuracy,
                    "median_val": done.val_accuracy.median() if len(done) else math.nan,
                    "best_trial": None if best is None else int(best.trial),
                    "best_plan": "" if best is None else best.plan,
                    "test_mean": math.nan if test is None else test.test_accuracy_mean,
                    "test_sd": math.nan if test is None else test.test_accuracy_sd,
                    "too_few": len(done) < FEW_TO_COMPARE,
                }
            )
    return pd.DataFrame(rows)


IMBALANCE = 1.5  # largest over smallest class: above this, balanced accuracy is reported too


def imbalanced(manifest: dict) -> bool:
    """Whether the test split's largest class has over IMBALANCE times its smallest's images."""
    counts = list(manifest["counts"]["test"].values())
    return bool(counts) and max(counts) > IMBALANCE * max(min(counts), 1)


def metrics(table: pd.DataFrame, balanced: bool = False) -> dict:
    """For `dvc metrics show` / `dvc exp show`: few numbers, named for the question.

    Per backbone, its winner on validation (rank 1): its strategy, the share of
    the backbone frozen, test accuracy over seeds, trainable parameters, device time;
    per baseline, its test accuracy. `balanced`: balanced accuracy beside accuracy.
    """
    out = {}
    for _, row in backbone_winners(table).iterrows():
        out[row.backbone] = {
            "strategy": row.strategy,
            "frozen_share": _rounded(row.frozen_fraction, 3),
            "test_accuracy": _rounded(row.test_accuracy_mean, 4),
            "test_accuracy_sd": _rounded(row.test_accuracy_sd, 4),
            "trainable_params": _rounded(row.trainable_params, 0),
            "device_seconds": _rounded(row.device_seconds, 3),
        }
        if balanced:
            out[row.backbone]["balanced_accuracy"] = _rounded(row.test_balanced_accuracy_mean, 4)
    for _, row in table[table.kind != TRANSFER].iterrows():
        key = "_".join(filter(None, [row.backbone, row.kind]))
        out[key] = {
            "test_accuracy": _rounded(row.test_accuracy_mean, 4),
            "test_accuracy_sd": _rounded(row.test_accuracy_sd, 4),
        }
        if balanced:
            out[key]["balanced_accuracy"] = _rounded(row.test_balanced_accuracy_mean, 4)
    return dict(sorted(out.items()))


def _rounded(value, digits: int) -> float | None:
    """JSON has no NaN: a missing number (every seed failed) is null."""
    if pd.isna(value):
        return None
    return int(value) if digits == 0 else round(float(value), digits)


def device_label(kinds) -> str:
    """'GPU seconds' only when everything ran on a GPU; CPU time is never called GPU time."""
    kinds = set(pd.Series(list(kinds)).dropna())
    return {frozenset({"GPU"}): "GPU seconds", frozenset({"CPU"}): "CPU seconds"}.get(
        frozenset(kinds), "device seconds"
    )


@dataclass(frozen=True)
class Tables:
    """The report's tables, computed once from the results they were built from."""

    results: Results  # as read
    headline: pd.DataFrame  # one row per configuration, the best on test first (`headline`)
    depth_curve: pd.DataFrame  # mean and sd over seeds per backbone, mode and depth
    winners: pd.DataFrame  # per backbone, the winning strategy on test (`strategy_winners`)
    unit: str  # what device time is counted in (`device_label`)


def build(results: Results) -> Tables:
    """Every table the report shows or writes, from what the stages wrote."""
    table = headline(results.runs, results.costs)
    return Tables(
        results=results,
        headline=table,
        depth_curve=depth_curve(results.depth_runs),
        winners=strategy_winners(table),
        unit=device_label(results.runs.device_kind),
    )
