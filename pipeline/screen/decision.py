"""Which (backbone, input size) pairs the screen sends on to a full sweep.

A pair's score is its best cut's: a backbone is as good as the best prefix of it that a
search could freeze. The top `sweep.screen.keep` pairs go on; a backbone is swept at its
kept sizes, or not at all. Pure pandas: the report ranks the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import ScreenParams
from pipeline.paths import SCREEN_DIR

ALL = "all"
SCREENED_OUT = "screened_out.json"  # what a screened-out backbone's sweep and final stage write


@dataclass(frozen=True)
class Decision:
    swept: bool
    sizes: tuple[int, ...]  # the input sizes its sweep searches

    def as_json(self) -> dict:
        return {**asdict(self), "sizes": list(self.sizes)}


def scores_path(name: str, folder: Path = SCREEN_DIR) -> Path:
    """Where `score@<name>` writes the backbone's candidates."""
    return folder / "scores" / f"{name}.csv"


def read_scores(names: list[str], folder: Path = SCREEN_DIR) -> pd.DataFrame:
    """The candidates of every backbone in `names` that was scored (all, after `dvc repro`)."""
    found = [pd.read_csv(scores_path(n, folder)) for n in names if scores_path(n, folder).is_file()]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame()


def path(name: str, folder: Path = SCREEN_DIR) -> Path:
    return folder / "decisions" / f"{name}.json"


def write(decisions: dict[str, Decision], folder: Path = SCREEN_DIR) -> None:
    """Only what a sweep needs, no scores: a sweep re-runs when its decision changes, not
    when a score moves in the third decimal."""
    for name, decision in decisions.items():
        path(name, folder).parent.mkdir(parents=True, exist_ok=True)
        path(name, folder).write_text(json.dumps(decision.as_json(), indent=1) + "\n")


def read(name: str, folder: Path = SCREEN_DIR) -> Decision | None:
    """The screen's decision for backbone `name`; None where no screen ran (a sweep run on
    its own): every size is swept then."""
    if not path(name, folder).is_file():
        return None
    found = json.loads(path(name, folder).read_text())
    return Decision(bool(found["swept"]), tuple(int(s) for s in found["sizes"]))


def ranked_pairs(scores: pd.DataFrame, score: str) -> pd.DataFrame:
    """One row per (backbone, image_size): its best cut by `score`, with `rank` (1: best).
    Ties go to the smaller input (cheaper), then to the backbone's name, so the order is
    the same on every machine."""
    best = (
        scores.sort_values([score, "frozen_fraction"], ascending=[False, False], kind="stable")
        .groupby(["backbone", "image_size"], sort=False)
        .head(1)
    )
    best = best.sort_values(
        [score, "image_size", "backbone"], ascending=[False, True, True], kind="stable"
    ).reset_index(drop=True)
    return best.assign(rank=range(1, len(best) + 1))


def decide(scores: pd.DataFrame, screen: ScreenParams, names: list[str]) -> dict[str, Decision]:
    """The decision for every backbone in `names` (each must have scores)."""
    pairs = ranked_pairs(scores, screen.score)
    kept = pairs if screen.keep == ALL else pairs[pairs["rank"] <= screen.keep]
    return {
        name: Decision(bool(sizes), sizes)
        for name in names
        for sizes in [tuple(sorted(int(s) for s in kept[kept.backbone == name].image_size))]
    }


def screened_sizes(name: str, prepared: list[int]) -> tuple[int, ...] | None:
    """The input sizes the screen kept for this backbone's runs, where it kept fewer than
    the `prepared` ones; None: every prepared size."""
    found = read(name)
    if found is None or not found.swept or list(found.sizes) == list(prepared):
        return None
    return found.sizes


def screened_out(name: str) -> bool:
    found = read(name)
    return found is not None and not found.swept


def mark_screened_out(name: str, *folders: Path) -> None:
    """The outputs DVC expects of a stage that has nothing to do: a note saying why."""
    note = {
        "backbone": name,
        "screened_out": True,
        "why": "the screen ranked it below sweep.screen.keep (results/screen/pairs.csv)",
    }
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SCREENED_OUT).write_text(json.dumps(note, indent=1) + "\n")
