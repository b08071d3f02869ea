"""The screen against what came after it: each candidate's scores beside what the search
and the final stage measured at the same backbone, input size and cut.

A transferability score is worth using only where it agrees with the real search on the
user's own data, and papers disagree on which one does (Agostinelli et al. 2022), so the
report measures the agreement every run: Kendall's tau-b between each score and the
search's best validation accuracy, over the candidates both reached.
"""

from __future__ import annotations

import pandas as pd

from pipeline.config import Params
from pipeline.evaluate.ranking import TRANSFER
from pipeline.report import blocks
from pipeline.report.tables import Tables
from pipeline.screen import decision, scores

SCORES = {"logme": "LogME", "knn": "k-NN", "probe": "probe"}
PAIR = ["backbone", "image_size"]
CUT = [*PAIR, "share"]


def _share(frame: pd.DataFrame) -> pd.DataFrame:
    """The frozen share as a join key: trials and the screen compute it the same way."""
    return frame.assign(share=frame.frozen_fraction.round(6))


def comparison(screen: pd.DataFrame, trials: pd.DataFrame, runs: pd.DataFrame, score: str):
    """One row per screened candidate: its scores and rank by `score`, the best validation
    accuracy of the search's completed trials at its cut (`searched`), and the final
    stage's mean test accuracy of that best trial where it was retrained (`tested`)."""
    if screen.empty:
        return screen
    done = _share(trials[trials.state == "COMPLETE"])
    best = done.sort_values("val_accuracy", ascending=False, kind="stable").drop_duplicates(CUT)
    best = best[[*CUT, "trial", "val_accuracy"]].rename(columns={"val_accuracy": "searched"})
    retrained = runs[runs.kind == TRANSFER].groupby(["backbone", "trial"]).test_accuracy.mean()
    rows = _share(screen).merge(best, on=CUT, how="left")
    rows["tested"] = [
        retrained.get((b, t)) if pd.notna(t) else None for b, t in zip(rows.backbone, rows.trial)
    ]
    rows = rows.sort_values(score, ascending=False, kind="stable").reset_index(drop=True)
    return rows.assign(rank=range(1, len(rows) + 1))


def pair_comparison(screen: pd.DataFrame, trials: pd.DataFrame, score: str) -> pd.DataFrame:
    """One row per (backbone, input size): its best cut's score and rank (the screen's
    decision), and the search's best validation accuracy there."""
    pairs = decision.ranked_pairs(screen, score)
    done = trials[trials.state == "COMPLETE"]
    searched = done.groupby(PAIR).val_accuracy.max().rename("searched").reset_index()
    return pairs.merge(searched, on=PAIR, how="left")


def kendall(frame: pd.DataFrame, score: str) -> tuple[float, int]:
    """Kendall's tau-b between `score` and the search's best val accuracy, and how many
    rows both have; nan below 3 rows (or where either is constant: scores.kendall_tau)."""
    both = frame.dropna(subset=[score, "searched"])
    if len(both) < 3:
        return float("nan"), len(both)
    return scores.kendall_tau(both[score], both.searched), len(both)


def agreement(pairs: pd.DataFrame, trials: pd.DataFrame) -> str:
    """Whether the screen's first backbone is the one the search found best on validation."""
    done = trials[trials.state == "COMPLETE"]
    if pairs.empty or done.empty:
        return "The search completed no trial to compare the screen with."
    top = pairs.iloc[0]
    found = done.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
    same = top.backbone == found.backbone
    return (
        f"The screen ranked **{top.backbone}** at {int(top.image_size)} px first; the "
        f"search's best on validation was **{found.backbone}** at {int(found.image_size)} px "
        f"({found.val_accuracy:.3f}): the screen "
        + ("would have chosen the same backbone." if same else "would have chosen another one.")
    )


def section(params: Params, tables: Tables) -> str:
    """The screen's table, its agreement with the search (tau) and what it cost."""
    found, screen = tables.results, tables.results.screen
    if screen.empty:
        return "## Screen\n\nNo screen ran (results from before the screen stage)."
    chosen = params.sweep.screen
    rows = comparison(screen, found.trials, found.runs, chosen.score)
    pairs = pair_comparison(screen, found.trials, chosen.score)
    seconds, swept = screen.seconds.sum(), found.trials.device_seconds.sum()
    return f"""## Screen: the backbones ranked before anything trained

Every backbone, input size and candidate cut was scored on its frozen, pooled features of
train and val with no training: LogME evidence on train (per image; higher is better),
k-NN accuracy on val (k = {chosen.neighbours}) and the converged linear probe's val accuracy. A
(backbone, size) pair counts as its best cut; ranked by **{SCORES[chosen.score]}**,
{_kept_text(chosen.keep, pairs, found.screened_out)} The screen took {seconds:.1f} s in all
({_share_text(seconds, swept)} of the sweeps' {swept:.0f} s of training), most of it the
forward passes whose activations the sweeps then read from the cache.

{blocks.table(_markdown(rows, found.screened_out))}

{_tau_text(rows, pairs)}

{agreement(pairs, found.trials)}"""


def _kept_text(keep, pairs: pd.DataFrame, out: tuple[str, ...]) -> str:
    if keep == decision.ALL:
        return f"all {len(pairs)} pairs went on to the sweeps (`sweep.screen.keep: all`)."
    left = f"; screened out: {', '.join(out)}" if out else ""
    return f"the top {keep} of {len(pairs)} pairs went on to the sweeps{left}."


def _share_text(seconds: float, swept: float) -> str:
    return f"{seconds / swept:.1%}" if swept > 0 else "no share"


def _tau_text(rows: pd.DataFrame, pairs: pd.DataFrame) -> str:
    """Kendall's tau of each score against the search, over cuts and over pairs."""
    parts = []
    for score, label in SCORES.items():
        tau, n = kendall(rows, score)
        pair_tau, pairs_n = kendall(pairs, score)
        parts.append(f"{label} {_tau(tau, n)} over cuts, {_tau(pair_tau, pairs_n)} over pairs")
    return (
        "Kendall's τ between each score and the search's best validation accuracy at the "
        "same cut (or pair), where both ran: " + "; ".join(parts) + "."
    )


def _tau(tau: float, n: int) -> str:
    return f"n/a ({n} compared)" if pd.isna(tau) else f"{tau:+.2f} (n = {n})"


def _markdown(rows: pd.DataFrame, out: tuple[str, ...]) -> pd.DataFrame:
    def number(value) -> str:
        return "" if pd.isna(value) else f"{value:.3f}"

    return pd.DataFrame(
        {
            "rank": rows["rank"],
            "backbone": rows.backbone,
            "size": rows.image_size.map(lambda s: f"{int(s)} px"),
            "cut": [f"{name} ({share:.0%} frozen)" for name, share in zip(rows.layer, rows.share)],
            "LogME": rows.logme.map(number),
            "k-NN": rows.knn.map(number),
            "probe": rows.probe.map(number),
            "swept": ["no" if b in out else "yes" for b in rows.backbone],
            "search's best val": rows.searched.map(number),
            "its test (final)": rows.tested.map(number),
        }
    )
