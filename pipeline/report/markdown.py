"""The report's words: report.md's sections built from the tables in tables.py."""

from __future__ import annotations

import json
import math
import textwrap

import pandas as pd
import yaml

from pipeline.config import Params
from pipeline.evaluate import baselines
from pipeline.evaluate.probe import STRATEGY as PROBE
from pipeline.evaluate.ranking import LINEAR_PIXELS, SCRATCH, TRANSFER
from pipeline.paths import FINAL_DIR
from pipeline.report import blocks, selection, statistics, tables
from pipeline.report.plots import FIGURES


def _fmt_int(value) -> str:
    return "?" if pd.isna(value) else f"{int(value):,}"


def _front_mark(row, short: str) -> str:
    if row[f"front_{short}_overall"]:
        return "★"
    return "☆" if row[f"front_{short}_backbone"] else ""


def _unstable(row) -> str:
    if not row.unstable:
        return ""
    return f" ⚠ unstable ({row.test_accuracy_min:.2f}–{row.test_accuracy_max:.2f})"


def _weighted(pick) -> str:
    """The loss's class weighting, when it is not the plain mean."""
    weight = getattr(pick, "class_weight", "none")
    weighted = isinstance(weight, str) and weight not in ("none", "")
    return f", the loss weighted **{weight}** per class" if weighted else ""


def headline_markdown(table: pd.DataFrame, unit: str, balanced: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "backbone": table.backbone.replace("", "(pixels)"),
            "configuration": table.configuration,
            "test accuracy": [
                f"**{r.test_accuracy_mean:.3f} ± {r.test_accuracy_sd:.3f}**{_unstable(r)}"
                for r in table.itertuples()
            ],
            "strategy": table.strategy.fillna(""),
            "selected on val": table.val_accuracy.map("{:.3f}".format),
            "px": table.image_size.map(lambda s: "" if pd.isna(s) else str(int(s))),
            "augmentation": table.augmentation.fillna(""),
            "freezing / model": table.plan,
            "head": table.head_units.map(lambda u: "" if pd.isna(u) else str(int(u))),
            "lr": table.learning_rate.map(lambda r: "" if pd.isna(r) else f"{r:.1e}"),
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
    if balanced:  # the test split's classes are imbalanced: per-class recall, averaged
        frame.insert(
            3,
            "balanced accuracy",
            [_mean_sd(m, sd) for m, sd in zip(
                table.test_balanced_accuracy_mean, table.test_balanced_accuracy_sd)],
        )  # fmt: skip
    return frame


def _mean_sd(mean: float, sd: float) -> str:
    return "" if pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"


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
            "best trial on test": [_mean_sd(r.test_mean, r.test_sd) for r in summary.itertuples()],
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


def winners_markdown(winners: pd.DataFrame) -> str:
    lines = []
    for w in winners.itertuples():
        line = f"- `{w.backbone}`: **{w.winner}** {w.mean:.3f} ± {w.sd:.3f} on test"
        if w.runner_up:
            line += (
                f", against the runner-up {w.runner_up} {w.runner_up_mean:.3f} ± "
                f"{w.runner_up_sd:.3f}: gap {w.gap:+.3f}, p = {w.p:.2g}, **{w.verdict}**"
            )
        lines.append(line + ".")
    return "\n".join(lines) or "- No strategy's best configuration was retrained."


def _head(row) -> str:
    """The head and rate of a trained configuration; nothing for the probe (its plan says)."""
    if pd.isna(row.learning_rate):
        return ""
    return f"; head {_fmt_int(row.head_units)} hidden units, learning rate {row.learning_rate:.1e}"


def _name(row) -> str:
    if row.strategy == PROBE:
        return f"`{row.backbone}` linear probe (logistic regression to convergence)"
    if row.kind == TRANSFER:
        return f"`{row.backbone}` {row.strategy} (trial {int(row.trial)})"
    return {SCRATCH: f"`{row.backbone}` from scratch", LINEAR_PIXELS: (
        "a linear model on pixels")}[row.kind]  # fmt: skip


def _times(more: float, less: float) -> str:
    if not (more > 0 and less > 0):
        return ""
    ratio = more / less
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def why_chosen(choice: selection.Choice) -> str:
    """The selection rule as applied: what the pick beat or tied with, and by how little."""
    pick, best = choice.pick, choice.best
    among = (
        f"{choice.candidates} candidates: every backbone's retrained configurations and "
        "the baselines"
    )
    if choice.rule == "best" or pick.equals(best):
        rule = (
            f"; none of the {len(choice.tied) - 1} more within one standard error "
            f"({choice.margin:.3f}, {choice.n_val} validation images) costs less"
            if choice.rule == "one_se" and len(choice.tied) > 1
            else ""
        )
        return (
            f"Chosen by validation accuracy ({pick.val_accuracy:.3f}), the best of {among}{rule}."
        )
    params = _times(best.trainable_params, pick.trainable_params)
    seconds = _times(best.device_seconds, pick.device_seconds)
    savings = ", ".join(
        text
        for text in (
            f"{params} fewer trainable parameters" if params else "",
            f"{seconds} less time" if seconds and best.device_seconds > pick.device_seconds
            else "",
        )
        if text
    )  # fmt: skip
    return (
        f"Chosen by validation accuracy ({pick.val_accuracy:.3f}): tied with the best, "
        f"{_name(best)} at {best.val_accuracy:.3f}, within one standard error "
        f"({choice.margin:.3f}, {choice.n_val} validation images), and the cheapest of the "
        f"{len(choice.tied)} so tied among {among}"
        + (f": {savings} than the best" if savings else "")
        + " (`report.selection: best` takes the raw maximum)."
    )


def stability_markdown(stability: pd.DataFrame, pick, n_val: int) -> str:
    """How often the same rule picks the recommendation, and each strategy, on resampled
    validation images."""
    if stability.empty:
        return "- **How stable is the pick**: not measured (no per-image validation results)."
    mine = stability[(stability.backbone == pick.backbone) & (stability.kind == pick.kind)
                     & (stability["rank"] == pick["rank"])]  # fmt: skip
    share = float(mine.share.iloc[0]) if len(mine) else 0.0
    options = stability.groupby("option", sort=False).share.sum().sort_values(ascending=False)
    listed = ", ".join(f"{name} {value:.0%}" for name, value in options.items() if value > 0)
    fragile = (
        f" **Fragile**: picked in fewer than {statistics.FRAGILE:.0%} of them; another draw of "
        "validation images could well change the answer, so weigh the runners-up."
        if share < statistics.FRAGILE
        else ""
    )
    return (
        f"- **How stable is the pick**: over {statistics.STABILITY_RESAMPLES:,} bootstrap "
        f"resamples of the {n_val} validation images, the same rule picks it in {share:.0%}; by "
        f"strategy: {listed}.{fragile}"
    )


def recommendation_markdown(
    table: pd.DataFrame, winners: pd.DataFrame, unit: str, n_val: int, rule: str
) -> str:
    """One answer per question a user asks, chosen by validation as the protocol says."""
    choice = selection.recommendation(table, n_val, rule)
    pick = choice.pick
    paid = "; ".join(
        f"against {g['against']} {g['gap']:+.3f} (p = {g['p']:.2g}): **{g['verdict']}**"
        for g in tables.against_baselines(table, pick)
    )
    if pick.kind != TRANSFER:
        paid = "No: a baseline is the pick, on validation (above)"
    stability = (
        f" **Unstable**: its seeds scored from {pick.test_accuracy_min:.3f} to "
        f"{pick.test_accuracy_max:.3f}; treat the mean with care."
        if pick.unstable
        else ""
    )
    if pick.kind == TRANSFER:
        use = f"""- **Use** `{pick.backbone}` at **{_size(pick)}** with augmentation \
**{pick.augmentation or "none"}**{_weighted(pick)} and **{pick.strategy}**: \
{pick.plan}{_head(pick)}. {why_chosen(choice)}
- **How much is frozen**: {pick.frozen_fraction:.0%} of the backbone's parameters; \
{_fmt_int(pick.trainable_params)} of {_fmt_int(pick.total_params)} parameters train."""
    else:
        use = f"""- **Transfer did not pay here: use {_name(pick)}**, learning rate \
{pick.learning_rate:.1e}, {_fmt_int(pick.trainable_params)} trainable parameters. \
{why_chosen(choice)}"""
    return f"""{use}
{stability_markdown(statistics.pick_stability(table, n_val, rule), pick, n_val)}
- **Test accuracy**: {pick.test_accuracy_mean:.3f} ± {pick.test_accuracy_sd:.3f} over \
{int(pick.seeds)} seeds, retrained on train+val.{stability}
- **Cost**: {pick.device_seconds:.1f} {unit} per training run, \
{pick.train_flops / 1e9:.1f} train GFLOPs.
- **Did transfer pay here?** {paid or "no baseline to compare with"}.
- **Which strategy wins on test**, each strategy's best configuration (chosen on validation) \
retrained over the same seeds:
{textwrap.indent(winners_markdown(winners), "  ")}"""


def baselines_text(params: Params) -> str:
    pixels = "a linear classifier on raw pixels"
    if not params.report.scratch:
        return (
            f"One baseline went through the same retraining and test with the same epoch cap: "
            f"{pixels} (the from-scratch baseline is off: `report.scratch: false`)."
        )
    return (
        "Two baselines went through the same retraining and test with the same epoch cap: "
        "each backbone trained from scratch (nothing frozen, random initialisation, the "
        "selected configuration's head, at the smallest searched input size: the costliest "
        f"run here, and a smaller input can only handicap it) and {pixels}."
    )


def _size(row) -> str:
    return "its stored size" if pd.isna(row.image_size) else f"{int(row.image_size)} px"


def input_markdown(trials: pd.DataFrame, unit: str) -> str:
    """Accuracy against input size and augmentation, and what each size costs."""
    table = tables.by_input(trials)
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
    return _fmt_table(frame)


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
    gaps = tables.verdicts(table)
    for backbone, group in gaps.groupby("backbone", sort=False):
        ranked = table[(table.backbone == backbone) & (table.kind == TRANSFER)]
        row = ranked[ranked["rank"] == 1].iloc[0]
        against = "; ".join(
            f"vs {g.against} {g.gap:+.3f} ± {g.se:.3f} (p = {g.p:.2g}): **{g.verdict}**"
            for g in group.itertuples()
        )
        tied = ranked[(ranked["rank"] > 1) & (ranked.val_accuracy == row.val_accuracy)]
        tie = (
            f" It tied on validation accuracy with {', '.join(tied.configuration)} (ties go "
            "to the lower validation loss, then fewer trainable parameters); compare their "
            "test rows before acting on the pick."
            if len(tied)
            else ""
        )
        lines.append(
            f"- `{backbone}`, selected by validation ({row.plan}): "
            f"{row.test_accuracy_mean:.3f} ± {row.test_accuracy_sd:.3f}"
            f"{_unstable(row)}; {against}.{tie}"
        )
    return "\n".join(lines)


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
        for row in table[table.kind != TRANSFER].itertuples()
        for end, rate in ends.items()
        if math.isclose(row.learning_rate, rate, rel_tol=1e-6)
    ]
    if not found:
        return ""
    return (
        "\n- Baselines whose chosen learning rate is an end of their grid, so they may be "
        f"under-tuned and transfer's gain over them overstated: {'; '.join(found)}."
    )


def data_gap_note(table: pd.DataFrame, counts: dict) -> str:
    """Baselines whose test score is far above the validation score that selected them.

    Validation scores come from models trained on train only; test scores from models
    retrained on train+val. The rate-selection run's own test score shows how much of
    the gap that extra data explains.
    """
    n_train, n_trainval = sum(counts["train"].values()), sum(
        counts["train"].values()) + sum(counts["val"].values())  # fmt: skip
    rows = table[
        (table.kind != TRANSFER)
        & (table.test_accuracy_mean - table.val_accuracy > 0.1)
        & table.test_accuracy_train_only.notna()
    ]
    lines = [
        f"\n- {r.backbone or 'pixels'} {r.configuration}: {r.val_accuracy:.3f} on validation "
        f"but {r.test_accuracy_mean:.3f} on test. Its validation score comes from a run "
        f"trained on train only ({n_train} images); that run scored "
        f"{r.test_accuracy_train_only:.3f} on test at its last epoch. Retrained on "
        f"train+val ({n_trainval} images) it scores {r.test_accuracy_mean:.3f}: the gap "
        "follows the extra data, not a leak."
        for r in rows.itertuples()
    ]
    return "".join(lines)


def weights_origin(meta: dict, source_classes: list) -> str:
    """Where a backbone's weights came from, and how well they do on the source classes."""
    weights = meta["weights"]
    if weights == "source":
        origin, how = f"pretrained here on source classes {source_classes}", "its own classifier"
    elif weights == "imagenet":
        origin, how = "ImageNet weights (keras.applications)", "a linear probe on its features"
    else:
        origin, how = f"weights from the file `{weights}`", "a linear probe on its features"
    if meta["source_accuracy"] is None:
        return f"{origin}; no source task to check its features on"
    return (
        f"{origin}; accuracy on the source classes {meta['source_accuracy']:.3f} "
        f"({how}, inference mode)"
    )


def _per_worker(trials: pd.DataFrame) -> str:
    counts = trials.worker.value_counts()
    if len(counts) <= 3:
        return ", ".join(f"{w}: {n}" for w, n in counts.items())
    return f"{counts.min()} to {counts.max()}"


def _fail_reasons(trials: pd.DataFrame) -> str:
    failed = trials[trials.state == "FAIL"]
    if failed.empty:
        return ""
    reasons = failed.fail_reason.fillna("").replace("", "(none recorded)").value_counts()
    lines = "\n".join(f"  - {n} x {r}" for r, n in reasons.items())
    return f"\n  Failed trials, by reason:\n{lines}\n"


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
    states["workers"] = trials.groupby("backbone").worker.nunique()
    states["trials per worker"] = trials.groupby("backbone").apply(_per_worker)
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
  {manifest["image_size"]} px ({manifest.get("resize", "crop")} to a square); source classes
  {_class_list(manifest, "source_classes")}, target classes
  {_class_list(manifest, "target_classes")}. Split sizes: {split_text}.
{folder_text(manifest)}
{_fmt_table(per_class_table(manifest))}

- **Backbones** and where their weights came from:
{sources}
- **Device**: {devices}. **Repeatability**: seed {params.seed}; TensorFlow op
  determinism {
        "on: the same params give the same numbers"
        if params.deterministic
        else "off (`deterministic: false`): runs may differ in the last digits and in what follows"
    }.
- **Search trials** per backbone (completed ones count toward `sweep.n_trials`,
  completed and pruned toward the cap `sweep.max_trials`; pruned: stopped early by the
  pruner; failed: see `fail_reason` in `reports/trials.csv`):

{_fmt_table(states.reset_index())}
{_fail_reasons(trials)}
- **Search space** (`search` in params.yaml):

```yaml
{space}
```

- **Packages**: {", ".join(f"{k} {v}" for k, v in versions.items())}.
"""


def _class_list(manifest: dict, key: str) -> str:
    names = manifest["class_names"]
    ids = manifest[key]
    if not ids:
        return "none (no source task)"
    return ", ".join(f"{names[c]}" if names[c] == str(c) else f"{names[c]} ({c})" for c in ids)


def per_class_table(manifest: dict) -> pd.DataFrame:
    """Images per class (rows) and split (columns), for each split that has any."""
    counts = {split: c for split, c in manifest["counts"].items() if c}
    classes = list(dict.fromkeys(name for c in counts.values() for name in c))
    return pd.DataFrame(
        {"class": classes, **{s: [c.get(n, "") for n in classes] for s, c in counts.items()}}
    )


def folder_text(manifest: dict) -> str:
    """An image folder's record: what was read, skipped and duplicated across splits."""
    folder = manifest.get("folder")
    if not folder:
        return ""
    skipped, leaks = folder["skipped"], folder["duplicates_across_splits"]
    text = (
        f"- **Image folder** `{folder['path']}` ({folder['layout']}): {folder['images']} "
        f"images read, **{len(skipped)} file(s) skipped** (listed with their reasons in "
        "`data/manifest.json` under `folder.skipped`)"
    )
    if folder.get("unused"):
        text += f"; {folder['unused']} image(s) left over by train_per_class, not used"
    if leaks:
        text += (
            f"; ⚠ **{len(leaks)} image(s) with identical bytes in more than one split** "
            "(leakage: test accuracy may be inflated; `folder.duplicates_across_splits`)"
        )
    if folder.get("label_conflicts"):
        text += (
            f"; ⚠ **{len(folder['label_conflicts'])} image(s) filed under more than one "
            "class** (one label is wrong; `folder.label_conflicts`)"
        )
    if folder.get("small_images"):
        text += (
            f"; {len(folder['small_images'])} image(s) far smaller than the input size, used "
            "upscaled (`folder.small_images`)"
        )
    return text + ". Images per class and split:\n"


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
    unit = tables.device_label(runs.device_kind)
    summary = tables.strategy_summary(trials, table, params.search.strategies)
    winners = tables.strategy_winners(table)
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
    n_val = sum(manifest["counts"]["val"].values())
    top = table.test_accuracy_mean.iloc[0]
    binomial_se = (top * (1 - top) / n_test) ** 0.5
    return f"""# Thaw report

## Recommendation

{recommendation_markdown(table, winners, unit, n_val, params.report.selection)}

## How these numbers were made

Which backbone, how much of it frozen, at what cost. The search chose
configurations by **validation** accuracy, which is therefore optimistic. Each
backbone's top {params.report.top_k}, and each strategy's best, were retrained with
{seeds} seeds on train+val and evaluated **once** on the held-out test split ({n_test} images);
the headline is that test accuracy, mean ± sd over seeds. {baselines_text(params)}
A baseline's learning rate was chosen on validation from {baselines.RATE_POINTS} rates over
the search's range, a lighter search than the transferred models' study, which favours
transfer. If they match the transferred models anyway, transfer did not pay on
this data.

## Verdict

Gaps are in test accuracy, ± their standard error, with the p-value of a paired
bootstrap over the {n_test} test images ({statistics.BOOTSTRAP} resamples): every run is
scored on the same images, so each image's correctness (averaged over a
configuration's seeds) is compared with the other configuration's on that image. The
test set's own sampling noise is in these numbers, as well as the seeds'. "paid" or
"lost" when p < {statistics.ALPHA:g}, "within noise" otherwise. (Results without
per-image scores fall back to Welch's t-test over seeds, which leaves the test
images' noise out: one binomial standard error is about ±{binomial_se:.3f} at the best
accuracy here.)

{verdict_markdown(table)}{edge_note(table, baselines.rate_grid(params.search))}\
{data_gap_note(table, manifest["counts"])}

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

{_fmt_table(headline_markdown(table, unit, tables.imbalanced(manifest)))}

![test accuracy vs trainable parameters]({FIGURES["params"]})

![test accuracy vs device time]({FIGURES["time"]})

## Freeze depth

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

{_fmt_table(depth_markdown(curve))}{under_trained_note(curve, len(manifest["target_classes"]))}

![validation accuracy vs freeze depth]({FIGURES["depth"]})

## Input size and augmentation

What the search found at each input size and augmentation level, per backbone: its
completed trials (of every strategy), their best and median validation accuracy, and the
median device time and train GFLOPs of a trial (a larger input costs about the square of
its side). A size or level with few trials says little on its own: the sampler spends
trials where validation was high.

{input_markdown(trials, unit)}

## Which search parameters mattered

Optuna's fANOVA importance of each parameter every completed trial has, for
validation accuracy (shares summing to 1 per backbone), from
{importance_basis(trials)} A strategy's own parameters (freeze depth, the backbone's
rate fraction, LP-FT's fine-tuning rate, a surgical window) exist only in that
strategy's trials, so fANOVA cannot rank them here: the strategy row stands for them,
and the freeze-depth curve below shows what depth did.

{_fmt_table(importance_rows) if len(importance_rows) else "Too few completed trials to tell."}

![parameter importances]({FIGURES["importances"]})

## Strategies

Every strategy of the search on every backbone: its trials (completed count toward
`sweep.n_trials`; each strategy got at least `sweep.min_trials_per_strategy`
completed, unless the cap of `sweep.max_trials` finished trials came first), the best
and median validation accuracy of its completed trials, and its best trial retrained
over {seeds} seeds and tested. {pruning_text(params.sweep.pruner.kind, trials)} With fewer than
{tables.FEW_TO_COMPARE} completed trials a strategy's best and median say little:
*too few to compare*.

{_fmt_table(strategy_table(summary))}

**Winning strategy on test**, per backbone (a paired bootstrap over the test images
against the runner-up; "within noise" when p ≥ {statistics.ALPHA:g}). Each strategy's
configuration was chosen on validation; comparing their test scores is a description
of this test set, not a second selection, and the winner is the highest of several, so
even a "wins" is optimistic by that choice.

{winners_markdown(winners)}

## All completed search trials (top {min(top_n, len(comparison))} of {len(comparison)})

{_fmt_table(comparison.head(top_n))}

Every trial, pruned and failed ones included, with per-epoch validation
accuracy, is in `reports/trials.csv`; every retraining run in `reports/final_runs.csv`.

## Provenance

{provenance(params, manifest, metas, trials, runs)}"""
