"""The report's tables, computed from the stages' results: no plotting, no Markdown here.

The headline table has one row per retrained configuration and baseline:
test accuracy mean and sd over seeds, the validation accuracy that selected
it, its costs, and whether it lies on a Pareto front (nothing else is at least
as accurate and at most as costly) of test accuracy against trainable
parameters and against device time, within its backbone and overall.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from pipeline.baselines import LINEAR_PIXELS, SCRATCH
from pipeline.errors import ThawError
from pipeline.final import TRANSFER
from pipeline.pareto import pareto_front

COSTS = {"params": "trainable_params", "time": "device_seconds"}


def _read(path: Path, stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise ThawError(f"{path} is missing; run `dvc repro {stage}` first")
    return pd.read_csv(path)


def load_trials(names: list[str], sweep_dir: Path) -> pd.DataFrame:
    return pd.concat(
        [_read(sweep_dir / n / "trials.csv", f"sweep@{n}") for n in names], ignore_index=True
    )


def load_runs(names: list[str], final_dir: Path, baseline_csv: Path) -> pd.DataFrame:
    """Every retraining run: each backbone's top-k and scratch, and the linear baseline."""
    tables = [_read(final_dir / n / "runs.csv", f"final@{n}") for n in names]
    tables.append(_read(baseline_csv, "linear_baseline"))
    runs = pd.concat(tables, ignore_index=True)
    runs["backbone"] = runs.backbone.fillna("")
    return runs


def load_depth_curves(names: list[str], final_dir: Path) -> pd.DataFrame:
    return pd.concat(
        [_read(final_dir / n / "depth.csv", f"final@{n}") for n in names], ignore_index=True
    )


def load_importances(names: list[str], sweep_dir: Path) -> pd.DataFrame:
    rows = []
    for name in names:
        path = sweep_dir / name / "importances.json"
        found = json.loads(path.read_text()) if path.is_file() else {"importances": {}}
        rows += [
            {
                "backbone": name,
                "parameter": p,
                "importance": v,
                "backbone_parameter": f"{name} / {p}",
            }
            for p, v in found["importances"].items()
        ]  # backbone_parameter: one bar per pair in `dvc plots show`
    return pd.DataFrame(rows, columns=["backbone", "parameter", "importance", "backbone_parameter"])


def _label(row) -> str:
    if row.kind == TRANSFER:
        return f"#{int(row['rank'])} (trial {int(row.trial)})"
    return {SCRATCH: "scratch baseline", LINEAR_PIXELS: "linear on pixels"}[row.kind]


def headline(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: seeds aggregated, Pareto membership marked."""
    runs = runs.assign(rank=runs["rank"].fillna(0).astype(int))
    keys = ["backbone", "kind", "rank"]
    table = (
        runs.groupby(keys, sort=False)
        .agg(
            trial=("trial", "first"),
            plan=("plan", "first"),
            head_units=("head_units", "first"),
            learning_rate=("learning_rate", "first"),
            epochs=("epochs", "first"),  # retrained for: up to the selecting run's best epoch
            val_accuracy=("val_accuracy", "first"),
            test_accuracy_mean=("test_accuracy", "mean"),
            test_accuracy_sd=("test_accuracy", "std"),
            seeds=("test_accuracy", "count"),  # failed runs (NaN) do not count
            trainable_params=("trainable_params", "first"),
            total_params=("total_params", "first"),
            # the median: a new model's first seed also pays tracing and graph building
            device_seconds=("device_seconds", "median"),
            device=("device", "first"),
            device_kind=("device_kind", "first"),
            train_flops=("train_flops", "mean"),
        )
        .reset_index()
    )
    table["configuration"] = [_label(r) for _, r in table.iterrows()]
    for short, cost in COSTS.items():
        overall = pareto_front(table, "test_accuracy_mean", cost)
        own = pareto_front(table, "test_accuracy_mean", cost, by="backbone")
        table[f"front_{short}_overall"] = overall
        table[f"front_{short}_backbone"] = own & (table.backbone != "")
    return table.sort_values(["test_accuracy_mean"], ascending=False, ignore_index=True)


ALPHA = 0.05  # two-sided level of the verdicts' test


def welch(a, b) -> tuple[float, float, float]:
    """Gap between two rows' mean test accuracies, its standard error over seeds, and
    the two-sided p-value of Welch's t-test (unequal variances; with three seeds a
    side the t distribution has few degrees of freedom, so twice the SE is too lenient)."""
    from scipy import stats

    gap = a.test_accuracy_mean - b.test_accuracy_mean
    se = math.sqrt(a.test_accuracy_sd**2 / a.seeds + b.test_accuracy_sd**2 / b.seeds)
    if se == 0:  # no spread over seeds on either side: any gap is beyond seed noise
        return gap, se, 0.0 if gap else 1.0
    p = stats.ttest_ind_from_stats(
        a.test_accuracy_mean, a.test_accuracy_sd, a.seeds,
        b.test_accuracy_mean, b.test_accuracy_sd, b.seeds,
        equal_var=False,
    ).pvalue  # fmt: skip
    return gap, se, float(p)


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Did transfer pay? Each backbone's selected configuration against each baseline.

    "paid" / "lost" when Welch's t-test over seeds rejects equal means at ALPHA,
    "within noise" otherwise. Seeds vary the initialisation and batch order, not
    the test images, so this is a floor on the noise (the report says so).
    """
    linear = table[table.kind == LINEAR_PIXELS]
    rows = []
    for _, chosen in table[(table.kind == TRANSFER) & (table["rank"] == 1)].iterrows():
        scratch = table[(table.kind == SCRATCH) & (table.backbone == chosen.backbone)]
        for name, other in (("scratch", scratch), ("linear on pixels", linear)):
            if other.empty or other.iloc[0].seeds < 2 or chosen.seeds < 2:
                continue  # one seed has no spread to test against
            gap, se, p = welch(chosen, other.iloc[0])
            verdict = "within noise" if p >= ALPHA else "paid" if gap > 0 else "lost"
            rows.append(
                {"backbone": chosen.backbone, "against": name, "gap": gap, "se": se, "p": p,
                 "verdict": verdict}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["backbone", "against", "gap", "se", "p", "verdict"])


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
            settings_trial=("settings_trial", "first"),
            head_units=("head_units", "first"),
            learning_rate=("learning_rate", "first"),
            lr_decay=("lr_decay", "first"),
        )
        .reset_index()
    )


def metrics(table: pd.DataFrame) -> dict:
    """For `dvc metrics show` / `dvc exp show`: each backbone's selected configuration."""
    out = {}
    for _, row in table.iterrows():
        if row.kind == TRANSFER and row["rank"] != 1:
            continue
        key = (
            row.backbone
            if row.kind == TRANSFER
            else "_".join(filter(None, [row.backbone, row.kind]))
        )
        out[key] = {
            "test_accuracy_mean": round(float(row.test_accuracy_mean), 4),
            "test_accuracy_sd": round(float(row.test_accuracy_sd), 4),
            "val_accuracy": round(float(row.val_accuracy), 4),
            "trainable_params": int(row.trainable_params),
            "device_seconds": round(float(row.device_seconds), 3),
        }
    return dict(sorted(out.items()))


def device_label(kinds) -> str:
    """'GPU seconds' only when everything ran on a GPU; CPU time is never called GPU time."""
    kinds = set(pd.Series(list(kinds)).dropna())
    return {frozenset({"GPU"}): "GPU seconds", frozenset({"CPU"}): "CPU seconds"}.get(
        frozenset(kinds), "device seconds"
    )
