"""The report's answer: the recommendation, how the numbers were made, and the verdict on
whether transfer paid. One function per section, each from the params and the tables."""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from pipeline.config import Params
from pipeline.evaluate import ranking
from pipeline.evaluate.ranking import LINEAR_PIXELS, PROBE, SCRATCH, TRANSFER
from pipeline.report import blocks, selection, statistics
from pipeline.report.tables import Tables, against_baselines, backbone_winners, verdicts
from pipeline.winner import card as cards


def recommendation(params: Params, tables: Tables) -> str:
    """What to use, chosen on validation by the selection rule, and how far to trust it."""
    body = recommendation_markdown(
        tables.headline,
        tables.winners,
        tables.unit,
        tables.results.images("val"),
        params.report.selection,
    )
    files = exported_markdown(tables.results.card, tables.headline, tables.results.images("val"),
                              params.report.selection)  # fmt: skip
    return f"## Recommendation\n\n{body}\n\n{files}"


def method(params: Params, tables: Tables) -> str:
    """How the numbers were made: selected on validation, retrained, tested once."""
    seeds, n_test = int(tables.headline.seeds.max()), tables.results.images("test")
    return f"""## How these numbers were made

Which backbone, how much of it frozen, at what cost. The search chose
configurations by **validation** accuracy, which is therefore optimistic. Each
backbone's top {params.report.top_k}, and each strategy's best, were retrained with
{seeds} seeds on train+val and evaluated **once** on the held-out test split ({n_test} images);
the headline is that test accuracy, mean ± sd over seeds. {baselines_text(params)}
A baseline's learning rate was chosen on validation from {ranking.RATE_POINTS} rates over
the search's range, a lighter search than the transferred models' study, which favours
transfer. If they match the transferred models anyway, transfer did not pay on
this data."""


def verdict(params: Params, tables: Tables) -> str:
    """Each backbone's winner against the baselines, with how the gaps were tested."""
    table, n_test = tables.headline, tables.results.images("test")
    top = table.test_accuracy_mean.iloc[0]
    binomial_se = (top * (1 - top) / n_test) ** 0.5
    n_train = tables.results.images("train")
    notes = edge_note(table, ranking.rate_grid(params.search)) + data_gap_note(
        table, n_train, n_train + tables.results.images("val")
    )
    return f"""## Verdict

Gaps are in test accuracy, ± their standard error, with the p-value of a paired
bootstrap over the {n_test} test images ({statistics.BOOTSTRAP} resamples): every run is
scored on the same images, so each image's correctness (averaged over a
configuration's seeds) is compared with the other configuration's on that image. The
test set's own sampling noise is in these numbers, as well as the seeds'. "paid" or
"lost" when p < {statistics.ALPHA:g}, "within noise" otherwise. (Results without
per-image scores fall back to Welch's t-test over seeds, which leaves the test
images' noise out: one binomial standard error is about ±{binomial_se:.3f} at the best
accuracy here.)

{verdict_markdown(table)}{notes}"""


def recommendation_markdown(
    table: pd.DataFrame, winners: pd.DataFrame, unit: str, n_val: int, rule: str
) -> str:
    """One answer per question a user asks, chosen by validation as the protocol says."""
    choice = selection.recommendation(table, n_val, rule)
    pick = choice.pick
    paid = "; ".join(
        f"against {g['against']} {g['gap']:+.3f} (p = {g['p']:.2g}): **{g['verdict']}**"
        for g in against_baselines(table, pick)
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
{blocks.count(pick.trainable_params)} of {blocks.count(pick.total_params)} parameters train."""
    else:
        use = f"""- **Transfer did not pay here: use {_name(pick)}**, learning rate \
{pick.learning_rate:.1e}, {blocks.count(pick.trainable_params)} trainable parameters. \
{why_chosen(choice)}"""
    return f"""{use}
- **The rule**: {rule_sentence(rule)}
{stability_markdown(statistics.pick_stability(table, n_val, rule), pick, n_val)}
- **Test accuracy**: {pick.test_accuracy_mean:.3f} ± {pick.test_accuracy_sd:.3f} over \
{int(pick.seeds)} seeds, retrained on train+val.{stability}
- **Cost**: {pick.device_seconds:.1f} {unit} per training run, \
{pick.train_flops / 1e9:.1f} train GFLOPs.
- **Did transfer pay here?** {paid or "no baseline to compare with"}.
- **Which strategy wins on test**, each strategy's best configuration (chosen on validation) \
retrained over the same seeds:
{textwrap.indent(blocks.winners_markdown(winners), "  ")}"""


def exported_markdown(card: dict | None, table: pd.DataFrame, n_val: int, rule: str) -> str:
    """The recommendation's files (models/recommended/, the export stage): each one's test
    accuracy measured on the file, and what it costs to run, on this machine."""
    if card is None:
        return "### The files\n\nNot exported yet: run `dvc repro export`."
    pick = selection.recommendation(table, n_val, rule).pick
    conf = card["configuration"]
    named = (conf.get("backbone"), conf.get("configuration")) == (pick.backbone, pick.configuration)
    if not named:
        return (
            "### The files\n\n**models/recommended/ holds another configuration** "
            f"({conf.get('backbone')} {conf.get('configuration')}) than this recommendation: "
            "run `dvc repro` to export this one."
        )
    final, rep = card["final_stage"], card["reproduced"]
    same = (
        "every test image scored as in the final stage's run"
        if rep["differing_test_images"] == 0
        else f"**{rep['differing_test_images']} test images scored otherwise than in the "
        "final stage's run**"
    )
    return f"""### The files: models/recommended/

This recommendation, retrained on train + val with seed {card["exported_seed"]} exactly as \
the final stage tested it ({final["test_accuracy"]:.4f} there; {same}), in every format. \
Each file's test accuracy is measured on the file as saved; *as the final stage's run*: \
test images it scores right or wrong as that run did; latency in ms per image, on \
{cards.machine_text(card["measured_on"])}. `thaw predict` uses model.keras; card.md says \
how to feed each file.

{chr(10).join(cards.files_table(card))}"""


def why_chosen(choice: selection.Choice) -> str:
    """The selection rule as applied: what the pick beat or tied with, and by how little."""
    pick, best = choice.pick, choice.best
    among = (
        f"{choice.candidates} candidates: every backbone's retrained configurations and "
        "the baselines"
    )
    if choice.rule == "best" or pick.equals(best):
        rule = (
            f"; none of the {len(choice.tied) - 1} more tied with it costs less"
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
        f"{_name(best)} at {best.val_accuracy:.3f}, {lead_text(choice.gap, choice.n_val)}, "
        f"and the cheapest of the {len(choice.tied)} so tied among {among}"
        + (f": {savings} than the best" if savings else "")
        + " (`report.selection: best` takes the raw maximum)."
    )


def rule_sentence(rule: str) -> str:
    """The selection rule in one sentence, as the report states it."""
    if rule == "best":
        return (
            "the highest validation accuracy wins, the cheaper of equals "
            "(`report.selection: best`)."
        )
    return f"chosen on validation: {selection.RULE} (`report.selection: one_se`)."


def lead_text(gap: selection.Gap, n_val: int) -> str:
    """The best's lead over the pick as the paired rule weighed it."""
    if not gap.paired:
        return (
            f"{gap.lead:.1f} images ahead of {n_val}, within one standard error "
            f"({gap.se:.1f} images, from the images two independent classifiers of these "
            "accuracies would disagree on: no per-image results)"
        )
    b = round((gap.discordant + gap.lead) / 2)
    return (
        f"{gap.lead:.0f} more right of the same {n_val} validation images ({b} right that "
        f"the pick missed, {round(gap.discordant) - b} the other way), within one standard "
        f"error of that paired difference (√{gap.discordant:.0f} = {gap.se:.1f} images)"
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


def _name(row) -> str:
    if row.strategy == PROBE:
        return f"`{row.backbone}` linear probe (logistic regression to convergence)"
    if row.kind == TRANSFER:
        return f"`{row.backbone}` {row.strategy} (trial {int(row.trial)})"
    return {SCRATCH: f"`{row.backbone}` from scratch", LINEAR_PIXELS: (
        "a linear model on pixels")}[row.kind]  # fmt: skip


def _size(row) -> str:
    return "its stored size" if pd.isna(row.image_size) else f"{int(row.image_size)} px"


def _weighted(pick) -> str:
    """The loss's class weighting, when it is not the plain mean."""
    weight = getattr(pick, "class_weight", "none")
    weighted = isinstance(weight, str) and weight not in ("none", "")
    return f", the loss weighted **{weight}** per class" if weighted else ""


def _head(row) -> str:
    """The head and rate of a trained configuration; nothing for the probe (its plan says)."""
    if pd.isna(row.learning_rate):
        return ""
    units = blocks.count(row.head_units)
    return f"; head {units} hidden units, learning rate {row.learning_rate:.1e}"


def _times(more: float, less: float) -> str:
    if not (more > 0 and less > 0):
        return ""
    ratio = more / less
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


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
        "head of its rank-1 trial, at the smallest searched input size: the costliest "
        f"run here, and a smaller input can only handicap it) and {pixels}."
    )


def verdict_markdown(table: pd.DataFrame) -> str:
    """The answer in a few lines: the most accurate row, and whether transfer paid."""
    best = table.iloc[0]  # the table is sorted by mean test accuracy
    lines = [
        f"- Highest mean test accuracy in the table: **{best.backbone or 'pixels'}, "
        f"{best.configuration}** ({best.plan}): {best.test_accuracy_mean:.3f} ± "
        f"{best.test_accuracy_sd:.3f}. A description, not a selection: picking the best of "
        "several rows by their test score is optimistic again."
    ]
    gaps = verdicts(table)
    for backbone, group in gaps.groupby("backbone", sort=False):
        ranked = table[(table.backbone == backbone) & (table.kind == TRANSFER)]
        row = backbone_winners(ranked).iloc[0]
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
            f"- `{backbone}`'s winner on validation, its rank-1 trial ({row.plan}): "
            f"{row.test_accuracy_mean:.3f} ± {row.test_accuracy_sd:.3f}"
            f"{blocks.unstable(row)}; {against}.{tie}"
        )
    return "\n".join(lines)


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


def data_gap_note(table: pd.DataFrame, n_train: int, n_trainval: int) -> str:
    """Baselines whose test score is far above the validation score that selected them.

    Validation scores come from models trained on train only; test scores from models
    retrained on train+val. The rate-selection run's own test score shows how much of
    the gap that extra data explains.
    """
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
