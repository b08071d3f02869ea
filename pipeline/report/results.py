"""What the report reads: the stages' results as frames and dicts, nothing computed yet.

Every input of the report stage is read here (the sweeps' trials and importances, the
final runs and depth curves, the linear baseline, the data manifest, the backbones'
metadata, the packages the final stage ran with, the export stage's card and running
costs), so the stage depends on these files
and on none of the code that wrote them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import ThawError
from pipeline.paths import (
    COSTS,
    FINAL_DIR,
    LINEAR_BASELINE,
    MANIFEST,
    MODELS_DIR,
    RECOMMENDED_DIR,
    SWEEP_DIR,
)
from pipeline.screen import decision

BITS = {"test_correct": str, "val_correct": str}  # "0110...": per-image results, not numbers


def _read(path: Path, stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise ThawError(f"{path} is missing; run `dvc repro {stage}` first")
    return pd.read_csv(path, dtype=BITS)


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


def package_versions(names: list[str], final_dir: Path) -> dict[str, str]:
    """The packages the final stage ran with, from the last backbone's summary that has them."""
    versions = {}
    for name in names:
        summary = final_dir / name / "summary.json"
        if summary.is_file():
            versions = json.loads(summary.read_text())["versions"]
    return versions


@dataclass(frozen=True)
class Results:
    """The stages' results as the report reads them."""

    trials: pd.DataFrame  # every search trial of every backbone
    runs: pd.DataFrame  # every retraining run and baseline run, one row per seed
    depth_runs: pd.DataFrame  # the freeze-depth curves, one row per seed
    importances: pd.DataFrame  # fANOVA importance per backbone and parameter
    manifest: dict  # the prepared data: splits, counts, classes, folder record
    metas: dict[str, dict]  # each backbone's meta.json: architecture, weights, source accuracy
    versions: dict[str, str]  # package versions of the final stage
    screen: pd.DataFrame  # the screen's scores, one row per backbone, size and cut (or none)
    screened_out: tuple[str, ...] = ()  # backbones the screen kept from the sweeps
    card: dict | None = None  # models/recommended/card.json: the export stage's files
    costs: pd.DataFrame | None = None  # every candidate architecture's size and latency

    def images(self, split: str) -> int:
        """How many images `split` holds, by the manifest's counts."""
        return sum(self.manifest["counts"][split].values())


def read(backbones: list[str]) -> Results:
    """Everything the report stage reads for the backbones `names`, from the stages' paths:
    the sweeps' and final stages' results of those the screen sent on."""
    names = [n for n in backbones if not decision.screened_out(n)]
    return Results(
        trials=load_trials(names, SWEEP_DIR),
        runs=load_runs(names, FINAL_DIR, LINEAR_BASELINE),
        depth_runs=load_depth_curves(names, FINAL_DIR),
        importances=load_importances(names, SWEEP_DIR),
        manifest=json.loads(MANIFEST.read_text()),
        metas={n: json.loads((MODELS_DIR / n / "meta.json").read_text()) for n in names},
        versions=package_versions(names, FINAL_DIR),
        screen=decision.read_scores(backbones),  # empty where no screen ran
        screened_out=tuple(n for n in backbones if n not in names),
        card=_json(RECOMMENDED_DIR / "card.json"),
        costs=pd.read_csv(COSTS) if COSTS.is_file() else None,
    )


def _json(path: Path) -> dict | None:
    """A file the export stage writes; None before it has run (the report says so)."""
    return json.loads(path.read_text()) if path.is_file() else None
