"""The evidence behind the answer: the headline table, the freeze-depth curve, input sizes,
the search parameters that mattered, the strategies and the search's trials. One function
per section, each from the params and the tables."""

from __future__ import annotations

import pandas as pd

from pipeline.config import Params
from pipeline.report import blocks
from pipeline.report.plots import FIGURES
from pipeline.report.statistics import ALPHA
from pipeline.report.tables import FEW_TO_COMPARE, Tables, by_input, imbalanced, strategy_summary


def headline(params: Params, tables: Tables) -> str:
    """Every configuration's test accuracy and costs, with the Pareto fronts marked."""
    found, unit = tables.results, tables.unit
    rows = headline_markdown(tables.headline, unit, imbalanced(found.manifest))
    return f"""## Headline: test accuracy and cost

*Epochs*: how long each run retrained (the selecting run's epochs up to its best
validation epoch). Device time is **{unit}** per retraining run on
{", ".join(sorted(set(found.runs.device.dropna())))}, the median over seeds: training only, so
neither the one-off tracing a new model's first run pays nor computing a frozen
prefix's activations once per configuration (they are cached and reused every
epoch; the FLOPs count that forward pass). Train GFLOPs are
analytical (forward through the whole model, backward only through what
trains), so they compare across machines. *model.keras MB* and *ms/image*: what the
configuration costs to run, as the served Keras model (uint8 images in, resizing
inside), measured by the export stage {running_on(found.card)}: median milliseconds
per image over repeated calls at batch 1 and 32, the fastest and slowest repeat in
brackets (the architecture's, so rows of one backbone, size and head share them; the
recommendation's TFLite files are in its section above). ★: on the overall Pareto
front of test accuracy against the column's cost (trainable parameters, time, or
latency at batch 1); ☆: on its own backbone's front only.

{blocks.table(rows)}

![test accuracy vs trainable parameters]({FIGURES["params"]})

![test accuracy vs device time]({FIGURES["time"]})

![test accuracy vs latency]({FIGURES["latency"]})"""


def running_on(card: dict | None) -> str:
    """Where the running costs were measured (the export stage's machine)."""
    if card is None:
        return "(not run yet: `dvc repro export`)"
    from pipeline.winner.card import machine_text

    return f"on {machine_text(card['measured_on'])}"


def depth(params: Params, tables: Tables) -> str:
    """Validation accuracy against how much of the backbone is frozen."""
    curve = tables.depth_curve
    classes = len(tables.results.manifest["target_classes"])
    return f"""## Freeze depth

Best validation accuracy over epochs, as the search measured it
({blocks.curve_seeds(curve)}, `report.curve_seeds`), when the backbone is cut
at each candidate depth. *Frozen features only*: a head on the frozen backbone's
output at the cut, the layers above unused. *Above the cut fine-tuned*: the
prefix frozen, every layer above it trained with the head. Fine-tuned runs use
the head, learning rate and discriminative rates of the best `freeze_depth`
trial (the strategy they run), frozen ones those of the best head-only trial;
the plot's legend names the trial. *Linear probe to convergence*: a standardised
logistic regression fit to the end on the same frozen activations, pooled over space
(deterministic, so one run): what the features allow at best, against what the
search's head and epochs got out of them.
When the search ran `surgical`, *the segment above the cut alone* trains just
that one segment (up to the next cut) with the head, everything else frozen, with
the head, rate and backbone rate of the best `surgical` trial: which block matters on
these data (Lee et al. 2023: early blocks for input-level shifts, late ones for
output-level shifts).

{blocks.table(depth_markdown(curve))}{under_trained_note(curve, classes)}

![validation accuracy vs freeze depth]({FIGURES["depth"]})"""


def sizes(params: Params, tables: Tables) -> str:
    """What each input size and augmentation level got in the search, and cost."""
    return f"""## Input size and augmentation

What the search found at each input size and augmentation level, per backbone: its
completed trials (of every strategy), their best and median validation accuracy, and the
median device time and train GFLOPs of a trial (a larger input costs about the square of
its side). A size or level with few trials says little on its own: the sampler spends
trials where validation was high.

{input_markdown(tables.results.trials, tables.unit)}"""


def importances(params: Params, tables: Tables) -> str:
    """fANOVA's share of validation accuracy's variance per search parameter."""
    found = tables.results
    rows = found.importances[["backbone", "parameter"]].assign(
        importance=found.importances.importance.map("{:.3f}".format)
    )
    return f"""## Which search parameters mattered

Optuna's fANOVA importance of each parameter every completed trial has, for
validation accuracy (shares summing to 1 per backbone), from
{importance_basis(found.trials)} A strategy's own parameters (freeze depth, the backbone's
rate fraction, LP-FT's fine-tuning rate, a surgical window) exist only in that
strategy's trials, so fANOVA cannot rank them here: the strategy row stands for them,
and the freeze-depth curve below shows what depth did.

{blocks.table(rows) if len(rows) else "Too few completed trials to tell."}

![parameter importances]({FIGURES["importances"]})"""


def strategies(params: Params, tables: Tables) -> str:
    """Every strategy's evidence on every backbone, and the winner on test."""
    trials, seeds = tables.results.trials, int(tables.headline.seeds.max())
    summary = strategy_summary(trials, tables.headline, params.search.strategies)
    return f"""## Strategies

Every strategy of the search on every backbone: its trials (completed count toward
`sweep.n_trials`; each strategy got at least `sweep.min_trials_per_strategy`
completed, unless the cap of `sweep.max_trials` finished trials came first), the best
and median validation accuracy of its completed trials, and its best trial retrained
over {seeds} seeds and tested. {pruning_text(params.sweep.pruner.kind, trials)} With fewer than
{FEW_TO_COMPARE} completed trials a strategy's best and median say little:
*too few to compare*.

{blocks.table(strategy_table(summary))}

**Winning strategy on test**, per backbone (a paired bootstrap over the test images
against the runner-up; "within noise" when p ≥ {ALPHA:g}). Each strategy's
configuration was chosen on validation; comparing their test scores is a description
of this test set, not a second selection, and the winner is the highest of several, so
even a "wins" is optimistic by that choice.

{blocks.winners_markdown(tables.winners)}"""


def trials(params: Params, tables: Tables) -> str:
    """The search's best completed trials, report.top_n of them."""
    done = trials_table(tables.results.trials, tables.unit)
    top_n = params.report.top_n
    return f"""## All completed search trials (top {min(top_n, len(done))} of {len(done)})

{blocks.table(done.head(top_n))}

Every trial, pruned and failed ones included, with per-epoch validation
accuracy, is in `reports/trials.csv`; every retraining run in `reports/final_runs.csv`."""


def trials_table(trials: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Every completed trial, the best on validation first (the fewer parameters on a tie)."""
    done = trials[trials.state == "COMPLETE"].sort_values(
        ["val_accuracy", "trainable_params"], ascending=[False, True]
    )
    return pd.DataFrame(
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


def _front_mark(row, short: str) -> str:
    if row[f"front_{short}_overall"]:
        return "★"
    return "☆" if row[f"front_{short}_backbone"] else ""


def _ms(table: pd.DataFrame, batch: int) -> list[str]:
    """Median ms per image of the served Keras model, the repeats' range in brackets."""
    columns = [f"latency_b{batch}{end}" for end in ("_ms", "_min_ms", "_max_ms")]
    return [
        "" if pd.isna(m) else f"{m:.2f} ({lo:.2f}–{hi:.2f})"
        for m, lo, hi in zip(*(table[c] for c in columns))
    ]


def headline_markdown(table: pd.DataFrame, unit: str, balanced: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "backbone": table.backbone.replace("", "(pixels)"),
            "configuration": table.configuration,
            "test accuracy": [
                f"**{r.test_accuracy_mean:.3f} ± {r.test_accuracy_sd:.3f}**{blocks.unstable(r)}"
                for r in table.itertuples()
            ],
            "strategy": table.strategy.fillna(""),
            "val accuracy": table.val_accuracy.map("{:.3f}".format),
            "px": table.image_size.map(lambda s: "" if pd.isna(s) else str(int(s))),
            "augmentation": table.augmentation.fillna(""),
            "freezing / model": table.plan,
            "head": table.head_units.map(lambda u: "" if pd.isna(u) else str(int(u))),
            "lr": table.learning_rate.map(lambda r: "" if pd.isna(r) else f"{r:.1e}"),
            "epochs": table.epochs.map(lambda e: "" if pd.isna(e) else str(int(e))),
            "trainable / total params": [
                f"{blocks.count(t)} / {blocks.count(n)}"
                for t, n in zip(table.trainable_params, table.total_params)
            ],
            unit: table.device_seconds.map("{:.1f}".format),
            "train GFLOPs": (table.train_flops / 1e9).map("{:.1f}".format),
            "model.keras MB": table.keras_bytes.map(
                lambda b: "" if pd.isna(b) else f"{b / 1e6:.1f}"
            ),
            "ms/image, batch 1": _ms(table, 1),
            "ms/image, batch 32": _ms(table, 32),
            "front: params": [_front_mark(r, "params") for _, r in table.iterrows()],
            "front: time": [_front_mark(r, "time") for _, r in table.iterrows()],
            "front: latency": [_front_mark(r, "latency") for _, r in table.iterrows()],
        }
    )
    if balanced:  # the test split's classes are imbalanced: per-class recall, averaged
        frame.insert(
            3,
            "balanced accuracy",
            [blocks.mean_sd(m, sd) for m, sd in zip(
                table.test_balanced_accuracy_mean, table.test_balanced_accuracy_sd)],
        )  # fmt: skip
    return frame


def depth_markdown(curve: pd.DataFrame) -> pd.DataFrame:
    wide = curve.pivot_table(
        index=["backbone", "depth", "frozen_fraction", "last_frozen_layer"],
        columns="mode",
        values=["val_accuracy_mean", "val_accuracy_sd", "converged_probe_accuracy",
                "pooled_features"],
        aggfunc="first",
    )  # fmt: skip
    rows = []
    for (backbone, _, fraction, layer), row in wide.iterrows():
        cell = {}
        for mode in ("frozen", "fine-tuned", "one segment fine-tuned"):
            mean = row.get(("val_accuracy_mean", mode))
            sd = row.get(("val_accuracy_sd", mode))
            spread = "" if pd.isna(sd) else f" ± {sd:.3f}"  # one seed: no sd
            cell[mode] = "" if pd.isna(mean) else f"{mean:.3f}{spread}"
        probe = row.get(("converged_probe_accuracy", "frozen"))
        width = row.get(("pooled_features", "frozen"))
        rows.append(
            {
                "backbone": backbone,
                "frozen up to": layer or "(nothing)",
                "share frozen": f"{fraction:.0%}",
                "frozen features only": cell["frozen"],
                "linear probe to convergence": "" if pd.isna(probe) else
                f"{probe:.3f} ({int(width)} pooled features)",
                "above the cut fine-tuned": cell["fine-tuned"],
                "the segment above the cut alone": cell["one segment fine-tuned"],
            }
        )  # fmt: skip
    table = pd.DataFrame(rows)
    if not table.empty and (table["the segment above the cut alone"] == "").all():
        table = table.drop(columns="the segment above the cut alone")  # surgical not searched
    return table


UNDER_TRAINED = 0.15  # a converged probe this much better: the head, not the features, fell short


def under_trained_note(curve: pd.DataFrame, num_classes: int) -> str:
    """Frozen probes far below what their features allow, with the evidence."""
    frozen = curve[curve["mode"] == "frozen"]
    short = frozen[frozen.converged_probe_accuracy - frozen.val_accuracy_mean > UNDER_TRAINED]
    if short.empty:
        return ""
    chance = 1 / num_classes + 0.02
    cuts = "; ".join(
        f"`{r.backbone}` at {r.last_frozen_layer} ({r.frozen_fraction:.0%} frozen): "
        f"{r.val_accuracy_mean:.3f}{' (chance)' if r.val_accuracy_mean <= chance else ''}"
        f" against {r.converged_probe_accuracy:.3f} converged on {int(r.pooled_features)} "
        "pooled features"
        for r in short.itertuples()
    )  # fmt: skip
    return (
        f"\n\nFrozen probes well below what their features allow: {cuts}. The features "
        "separate the classes (the converged probe says how well); the head, trained with "
        "the best head-only trial's rate for the search's epochs, did not get there. Pooled "
        "activations at a shallow cut are small and unnormalised, so the gradient a head gets "
        "from them is small too: at those depths the frozen curve measures that budget, not "
        "the features. The converged column is the fairer reading of transferability."
    )


def input_markdown(trials: pd.DataFrame, unit: str) -> str:
    """Accuracy against input size and augmentation, and what each size costs."""
    table = by_input(trials)
    if table.empty:
        return "One input size, no augmentation searched."
    frame = pd.DataFrame(
        {
            "backbone": table.backbone,
            "px": table.image_size.astype(int),
            "augmentation": table.augmentation,
            "completed trials": table.trials,
            "best val": table.best_val.map("{:.3f}".format),
            "median val": table.median_val.map("{:.3f}".format),
            f"median {unit}": table.median_seconds.map("{:.1f}".format),
            "median train GFLOPs": (table.median_gflops / 1e9).map("{:.2f}".format),
        }
    )
    return blocks.table(frame)


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


def strategy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Every strategy on every backbone: how much evidence, and how good on val and test."""
    return pd.DataFrame(
        {
            "backbone": summary.backbone,
            "strategy": summary.strategy,
            "completed / pruned / failed": [
                f"{r.completed} / {r.pruned} / {r.failed}" for r in summary.itertuples()
            ],
            "best val": summary.best_val.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
            "median val": summary.median_val.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
            "best trial on test": [
                blocks.mean_sd(r.test_mean, r.test_sd) for r in summary.itertuples()
            ],
            "best trial": [
                "" if pd.isna(r.best_trial) else f"{int(r.best_trial)}: {r.best_plan}"
                for r in summary.itertuples()
            ],
            "note": summary.too_few.map(lambda few: "too few to compare" if few else ""),
        }
    )


def pruning_text(kind: str, trials: pd.DataFrame) -> str:
    """What the pruner did, for the pruner that ran."""
    pruned = int((trials.state == "PRUNED").sum())
    if kind == "none":
        return "No pruner ran (`sweep.pruner.kind: none`)."
    rule = (
        "compares a trial only with completed trials of its own strategy, and a phased "
        "strategy (`gradual`, `lp_ft`) only once its last phase has run "
        "`sweep.pruner.warmup_epochs` epochs"
        if kind == "median"
        else "(hyperband) shares Optuna's brackets across strategies; it judges a phased "
        "strategy only once its last phase has run `sweep.pruner.warmup_epochs` epochs"
    )
    done = f"it pruned {pruned} trial(s)" if pruned else "it pruned none"
    done += " (the stratified start-up, each strategy's first trials, always runs in full)."
    return f"The pruner {rule}; {done}"
