"""Markdown's building blocks, shared by the report's sections: a table, a count, a mean ±
sd, an unstable row's mark, and the words the depth section and its plot share."""

from __future__ import annotations

import pandas as pd


def table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def count(value) -> str:
    """A whole number with thousands separators; "?" when missing (every seed failed)."""
    return "?" if pd.isna(value) else f"{int(value):,}"


def mean_sd(mean: float, sd: float) -> str:
    return "" if pd.isna(mean) else f"{mean:.3f} ± {sd:.3f}"


def unstable(row) -> str:
    """After a row's test accuracy: the span of its seeds when they disagree (tables.headline)."""
    if not row.unstable:
        return ""
    return f" ⚠ unstable ({row.test_accuracy_min:.2f}–{row.test_accuracy_max:.2f})"


def curve_seeds(curve: pd.DataFrame) -> str:
    """How the curve's points were averaged (report.curve_seeds): the report's and plot's words."""
    seeds = int(curve.seeds.max()) if len(curve) else 0
    return "one seed" if seeds < 2 else f"mean ± sd over {seeds} seeds"


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
