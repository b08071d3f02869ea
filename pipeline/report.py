"""Stage `report`: one document that answers the question, honestly.

    python -m pipeline.report

Reads the sweeps (`results/sweep/<name>/`), the final retraining runs and
baselines (`results/final/<name>/`, `results/baseline/`), the data manifest and
the backbones' metadata. Writes `reports/report.md` with the PNG figures it
embeds, the CSVs behind them (also declared as DVC plots), `reports/trials.csv`
(every search trial) and `reports/metrics.json` (for `dvc metrics show` and
`dvc exp show`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import yaml

from pipeline import baselines, data, plots, report_tables
from pipeline.config import Params, load_params
from pipeline.context import MODELS_DIR
from pipeline.errors import run_main
from pipeline.final import FINAL_DIR
from pipeline.linear_baseline import OUT as BASELINE_CSV
from pipeline.prepare import MANIFEST
from pipeline.sweep import RESULTS_DIR

REPORTS_DIR = Path("reports")
FIGURES = {
    "params": "accuracy_vs_trainable_params.png",
    "time": "accuracy_vs_device_time.png",
    "depth": "accuracy_vs_freeze_depth.png",
    "importances": "importances.png",
}


def _fmt_int(value) -> str:
    return f"{int(value):,}"


def _front_mark(row, short: str) -> str:
    if row[f"front_{short}_overall"]:
        return "★"
    return "☆" if row[f"front_{short}_backbone"] else ""


def headline_markdown(table: pd.DataFrame, unit: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "backbone": table.backbone.replace("", "(pixels)"),
            "configuration": table.configuration,
            "test accuracy": [
                f"**{m:.3f} ± {s:.3f}**"
                for m, s in zip(table.test_accuracy_mean, table.test_accuracy_sd)
            ],
            "selected on val": table.val_accuracy.map("{:.3f}".format),
            "freezing / model": table.plan,
            "head": table.head_units.map(lambda u: "" if pd.isna(u) else str(int(u))),
            "lr": table.learning_rate.map("{:.1e}".format),
            "epochs": table.epochs.map(lambda e: "" if pd.isna(e) else str(int(e))),
            "trainable / total params": [
                f"{_fmt_int(t)} / {_fmt_int(n)}"
                for t, n in zip(table.trainable_params, table.total_params)
            ],
            unit: table.device_seconds.map("{:.1f}".format),
            "train GFLOPs": (table.train_flops / 1e9).map("{:.1f}".format),
            "front: params": [_front_mark(r, "params") for _, r in table.iterrows()],
            "front: time": [_front_mark(r, "time") for _, r in table.iterrows()],
        }
    )


def strategy_table(trials: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Best trial per backbone x strategy, with end and peak trainable counts."""
    done = trials[trials.state == "COMPLETE"]
    best = done.loc[done.groupby(["backbone", "strategy"], sort=False).val_accuracy.idxmax()]
    best = best.sort_values(["backbone", "val_accuracy"], ascending=[True, False])
    return pd.DataFrame(
        {
            "backbone": best.backbone,
            "strategy": best.strategy,
            "best val accuracy": best.val_accuracy.map("{:.3f}".format),
            "trials": [
                int(((done.backbone == b) & (done.strategy == s)).sum())
                for b, s in zip(best.backbone, best.strategy)
            ],
            "plan": best.plan,
            "trainable params (end / max)": [
                f"{e:,.0f} / {m:,.0f}"
                for e, m in zip(best.trainable_params, best.max_trainable_params)
            ],
            unit: best.device_seconds.map("{:.1f}".format),
        }
    )


def _fmt_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def verdict_markdown(table: pd.DataFrame) -> str:
    """The answer in a few lines: the most accurate row, and whether transfer paid."""
    best = table.iloc[0]  # the table is sorted by mean test accuracy
    lines = [
        f"- Highest mean test accuracy in the table: **{best.backbone or 'pixels'}, "
        f"{best.configuration}** ({best.plan}): {best.test_accuracy_mean:.3f} ± "
        f"{best.test_accuracy_sd:.3f}. A description, not a selection: picking the best of "
        "several rows by their test score is optimistic again."
    ]
    gaps = report_tables.verdicts(table)
    for backbone, group in gaps.groupby("backbone", sort=False):
        ranked = table[(table.backbone == backbone) & (table.kind == report_tables.TRANSFER)]
        row = ranked[ranked["rank"] == 1].iloc[0]
        against = "; ".join(
            f"vs {g.against} {g.gap:+.3f} ± {g.se:.3f} (p = {g.p:.2g}): **{g.verdict}**"
            for g in group.itertuples()
        )
        tied = ranked[(ranked["rank"] > 1) & (ranked.val_accuracy == row.val_accuracy)]
        tie = (
            f" It tied on validation with {', '.join(tied.configuration)} (ties go to fewer "
            "trainable parameters); compare their test rows before acting on the pick."
            if len(tied)
            else ""
        )
        lines.append(
            f"- `{backbone}`, selected by validation ({row.plan}): "
            f"{row.test_accuracy_mean:.3f} ± {row.test_accuracy_sd:.3f}; {against}.{tie}"
        )
    return "\n".join(lines)


def depth_markdown(curve: pd.DataFrame) -> pd.DataFrame:
    wide = curve.pivot_table(
        index=["backbone", "depth", "frozen_fraction", "last_frozen_layer"],
        columns="mode",
        values=["val_accuracy_mean", "val_accuracy_sd"],
        aggfunc="first",
    )
    rows = []
    for (backbone, _, fraction, layer), row in wide.iterrows():
        cell = {}
        for mode in ("frozen", "fine-tuned"):
            mean = row.get(("val_accuracy_mean", mode))
            sd = row.get(("val_accuracy_sd", mode))
            cell[mode] = "" if pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"
        rows.append(
            {
                "backbone": backbone,
                "frozen up to": layer or "(nothing)",
                "share frozen": f"{fraction:.0%}",
                "frozen features only": cell["frozen"],
                "above the cut fine-tuned": cell["fine-tuned"],
            }
        )
    return pd.DataFrame(rows)


FEW_TRIALS = 20  # below this many completed trials, importances are a hint at best


def importance_basis(trials: pd.DataFrame) -> str:
    """How many completed trials the importances rest on, and a warning when few."""
    counts = trials[trials.state == "COMPLETE"].groupby("backbone", sort=False).size()
    text = ", ".join(f"{n} completed trials for {name}" for name, n in counts.items()) + "."
    if counts.empty or counts.min() < FEW_TRIALS:
        text += (
            f" Under {FEW_TRIALS} completed trials a forest's importances are a hint, not a"
            " finding: raise `sweep.n_trials` before acting on them."
        )
    return text


def edge_note(table: pd.DataFrame, grid: list[float]) -> str:
    """Baselines whose chosen rate is the grid's end: a better one may lie beyond it."""
    ends = {"lowest": grid[0], "highest": grid[-1]}
    found = [
        f"{row.backbone or 'pixels'} {row.configuration} ({row.learning_rate:.1e}, the {end})"
        for row in table[table.kind != report_tables.TRANSFER].itertuples()
        for end, rate in ends.items()
        if math.isclose(row.learning_rate, rate, rel_tol=1e-6)
    ]
    if not found:
        return ""
    return (
        "\n- Baselines whose chosen learning rate is an end of their grid, so they may be "
        f"under-tuned and transfer's gain over them overstated: {'; '.join(found)}."
    )


def weights_origin(meta: dict, source_classes: list) -> str:
    """Where a backbone's weights came from, and how well they do on the source classes."""
    weights = meta["weights"]
    if weights == "source":
        origin, how = f"pretrained here on source classes {source_classes}", "its own classifier"
    elif weights == "imagenet":
        origin, how = "ImageNet weights (keras.applications)", "a linear probe on its features"
    else:
        origin, how = f"weights from the file `{weights}`", "a linear probe on its features"
    return (
        f"{origin}; accuracy on the source classes {meta['source_accuracy']:.3f} "
        f"({how}, inference mode)"
    )


def provenance(
    params: Params, manifest: dict, metas: dict, trials: pd.DataFrame, runs: pd.DataFrame
) -> str:
    counts = manifest["counts"]
    split_text = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    sources = "\n".join(
        f"  - `{name}`: {m['arch']}, {weights_origin(m, manifest['source_classes'])}"
        for name, m in metas.items()
    )
    states = trials.groupby(["backbone", "state"]).size().unstack(fill_value=0)
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        if state not in states:
            states[state] = 0
    states = states[["COMPLETE", "PRUNED", "FAIL"]].rename(
        columns={"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}
    )
    space = yaml.safe_dump(
        params.search.model_dump(mode="json"), sort_keys=False, default_flow_style=None
    ).strip()
    versions = {}
    for name in metas:
        summary = FINAL_DIR / name / "summary.json"
        if summary.is_file():
            versions = json.loads(summary.read_text())["versions"]
    devices = ", ".join(
        f"{d} ({k})"
        for d, k in runs[["device", "device_kind"]].drop_duplicates().itertuples(index=False)
    )
    tfds = f"{manifest['tfds_name']} {manifest['tfds_version']}"
    return f"""- **Dataset**: `{manifest["dataset"]}` via TFDS (`{tfds}`), images at
  {manifest["image_size"]} px; source classes {manifest["source_classes"]}, target classes
  {manifest["target_classes"]}. Split sizes: {split_text}.
- **Backbones** and where their weights came from:
{sources}
- **Device**: {devices}.
- **Search trials** per backbone (completed and pruned count as finished toward
  `sweep.n_trials`; pruned: stopped early by the pruner; failed: see `fail_reason` in
  `reports/trials.csv`):

{_fmt_table(states.reset_index())}

- **Search space** (`search` in params.yaml):

```yaml
{space}
```

- **Packages**: {", ".join(f"{k} {v}" for k, v in versions.items())}.
"""


def markdown(
    params: Params,
    trials: pd.DataFrame,
    table: pd.DataFrame,
    curve: pd.DataFrame,
    importances: pd.DataFrame,
    manifest: dict,
    metas: dict,
    runs: pd.DataFrame,
) -> str:
    unit = report_tables.device_label(runs.device_kind)
    seeds = int(table.seeds.max())
    done = trials[trials.state == "COMPLETE"].sort_values(
        ["val_accuracy", "trainable_params"], ascending=[False, True]
    )
    top_n = params.report.top_n
    comparison = pd.DataFrame(
        {
            "backbone": done.backbone,
            "trial": done.trial,
            "val accuracy": done.val_accuracy.map("{:.3f}".format),
            "strategy": done.strategy,
            "freezing": done.plan,
            "head units": done.head_units,
            "learning rate": done.learning_rate.map("{:.1e}".format),
            "trainable params (end / max)": [
                f"{e:,.0f} / {m:,.0f}"
                for e, m in zip(done.trainable_params, done.max_trainable_params)
            ],
            unit: done.device_seconds.map("{:.1f}".format),
            "train GFLOPs": (done.train_flops / 1e9).map("{:.1f}".format),
        }
    )
    importance_rows = importances[["backbone", "parameter"]].assign(
        importance=importances.importance.map("{:.3f}".format)
    )
    n_test = sum(manifest["counts"]["test"].values())
    top = table.test_accuracy_mean.iloc[0]
    binomial_se = (top * (1 - top) / n_test) ** 0.5
    return f"""# Thaw report

Which backbone, how much of it frozen, at what cost. The search chose
configurations by **validation** accuracy, which is therefore optimistic. Each
backbone's top {params.report.top_k} were retrained with {seeds} seeds on
train+val and evaluated **once** on the held-out test split ({n_test} images);
the headline is that test accuracy, mean ± sd over seeds. Two baselines went
through the same retraining and test with the same epoch cap: each backbone
trained from scratch (nothing frozen, random initialisation, the selected
configuration's head) and a linear classifier on raw pixels. Their learning rate
was chosen on validation from {baselines.RATE_POINTS} rates over the search's
range, a lighter search than the transferred models' study, which favours
transfer. If they match the transferred models anyway, transfer did not pay on
this data.

## Verdict

Gaps are in test accuracy, ± their standard error over seeds, with the p-value of
Welch's t-test over seeds: "paid" or "lost" when p < {report_tables.ALPHA:g},
"within noise" otherwise. Seeds vary initialisation and batch order only: every
run is scored on the same {n_test} test images, whose own sampling error (one
binomial standard error, about ±{binomial_se:.3f} at the best accuracy here) is
not in these numbers.

{verdict_markdown(table)}{edge_note(table, baselines.rate_grid(params.search))}

## Headline: test accuracy and cost

*Epochs*: how long each run retrained (the selecting run's epochs up to its best
validation epoch). Device time is **{unit}** per retraining run on
{", ".join(sorted(set(runs.device.dropna())))}, the median over seeds: training only, so
neither the one-off tracing a new model's first run pays nor computing a frozen
prefix's activations once per configuration (they are cached and reused every
epoch; the FLOPs count that forward pass). Train GFLOPs are
analytical (forward through the whole model, backward only through what
trains), so they compare across machines. ★: on the overall Pareto front of
test accuracy against the column's cost (trainable parameters, or time);
☆: on its own backbone's front only.

{_fmt_table(headline_markdown(table, unit))}

![test accuracy vs trainable parameters]({FIGURES["params"]})

![test accuracy vs device time]({FIGURES["time"]})

## Freeze depth

Best validation accuracy over epochs, as the search measured it (mean ± sd over
{seeds} seeds), when the backbone is cut at each candidate depth. *Frozen
features only*: a head on the frozen backbone's output at the cut, the layers
above unused. *Above the cut fine-tuned*: the
prefix frozen, every layer above it trained with the head. Fine-tuned runs use
the head, learning rate and discriminative rates of the best `freeze_depth`
trial (the strategy they run), frozen ones those of the best head-only trial;
the plot's legend names the trial.

{_fmt_table(depth_markdown(curve))}

![validation accuracy vs freeze depth]({FIGURES["depth"]})

## Which search parameters mattered

Optuna's fANOVA importance of each parameter every completed trial has, for
validation accuracy (shares summing to 1 per backbone), from
{importance_basis(trials)}

{_fmt_table(importance_rows) if len(importance_rows) else "Too few completed trials to tell."}

![parameter importances]({FIGURES["importances"]})

## Strategies (search, validation accuracy)

Each freezing strategy's best trial per backbone. For strategies with phases
(`gradual`, `lp_ft`) the trainable count is given at the end and at its peak.

{_fmt_table(strategy_table(trials, unit))}

## All completed search trials (top {min(top_n, len(comparison))} of {len(comparison)})

{_fmt_table(comparison.head(top_n))}

Every trial, pruned and failed ones included, with per-epoch validation
accuracy, is in `reports/trials.csv`; every retraining run in `reports/final_runs.csv`.

## Provenance

{provenance(params, manifest, metas, trials, runs)}"""


def main() -> None:
    params = load_params()
    names = list(params.backbones)
    trials = report_tables.load_trials(names, RESULTS_DIR)
    runs = report_tables.load_runs(names, FINAL_DIR, BASELINE_CSV)
    table = report_tables.headline(runs)
    curve = report_tables.depth_curve(report_tables.load_depth_curves(names, FINAL_DIR))
    importances = report_tables.load_importances(names, RESULTS_DIR)
    manifest = data.read_manifest(MANIFEST)
    metas = {n: json.loads((MODELS_DIR / n / "meta.json").read_text()) for n in names}
    REPORTS_DIR.mkdir(exist_ok=True)
    trials.to_csv(REPORTS_DIR / "trials.csv", index=False)
    runs.to_csv(REPORTS_DIR / "final_runs.csv", index=False)
    table.to_csv(REPORTS_DIR / "headline.csv", index=False)
    curve.to_csv(REPORTS_DIR / "depth_curve.csv", index=False)
    importances.to_csv(REPORTS_DIR / "importances.csv", index=False)
    metrics = report_tables.metrics(table)
    (REPORTS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    unit = report_tables.device_label(runs.device_kind)
    plots.accuracy_vs_cost(
        table, "trainable_params", "params", "trainable parameters", REPORTS_DIR / FIGURES["params"]
    )
    plots.accuracy_vs_cost(
        table, "device_seconds", "time", f"{unit} per run", REPORTS_DIR / FIGURES["time"]
    )
    plots.depth_curve(curve, REPORTS_DIR / FIGURES["depth"])
    plots.importances(importances, REPORTS_DIR / FIGURES["importances"])
    (REPORTS_DIR / "report.md").write_text(
        markdown(params, trials, table, curve, importances, manifest, metas, runs)
    )
    print(f"report: {len(table)} configurations over {len(names)} backbones -> reports/report.md")


if __name__ == "__main__":
    run_main(main)
