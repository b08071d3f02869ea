"""The export stage's work, start to end: pick, rebuild, write every format, test each
file, time each file and every candidate, and say it all in the card."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import provenance
from pipeline.config import Params
from pipeline.data import datasets
from pipeline.recommend import candidates, chosen, tested
from pipeline.train import devices
from pipeline.winner import card, formats, latency


def export(params: Params, manifest: dict, out: Path, costs: Path) -> dict:
    """models/recommended/ (`out`) with its card, and the candidates' running costs."""
    pick = chosen.pick(params)
    _say(f"the recommendation: {pick.row.backbone} {pick.row.configuration}, seed {pick.seed}")
    rebuilt = chosen.rebuild(pick, params, manifest)
    # the network's input side: a baseline on pixels reads the images as stored
    size = manifest["image_size"] if pd.isna(pick.row.image_size) else int(pick.row.image_size)
    files = written_and_tested(pick, rebuilt, manifest, size, out)
    machine = {"device": devices.current().name, "kind": devices.current().kind,
               "cores": devices.cores(), "threads": devices.cores()}  # fmt: skip
    frame = timed(pick, files, manifest, size, out)
    costs.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(device=machine["device"], threads=machine["threads"]).to_csv(costs, index=False)
    differing = chosen.differing(rebuilt.test_correct, pick.run.test_correct)
    reproduced = {"differing_test_images": differing, "examples": len(pick.run.test_correct)}
    made = card.card(pick, rebuilt.meta, reproduced, files, machine, manifest,
                     provenance.package_versions())  # fmt: skip
    card.write_card(out, made)
    return made


def written_and_tested(pick, rebuilt, manifest: dict, size: int, out: Path) -> dict:
    """Every format under `out` (an empty folder first), each tested on the test split."""
    splits = datasets.load_target_splits(manifest, ("train", "test"), size)
    stored = np.asarray(datasets.load_target_splits(manifest, ("test",))["test"].images)
    formats.clean(out)
    _say(f"writing {', '.join(formats.FILES.values())} to {out}/")
    failed = formats.write(rebuilt.full, rebuilt.core, out, np.asarray(splits["train"].images))
    images = {formats.STORED: stored, formats.SIZED: np.asarray(splits["test"].images)}
    return tested.test_files(out, failed, images, splits["test"].labels, pick.run.test_correct)


def timed(pick, files: dict, manifest: dict, size: int, out: Path) -> pd.DataFrame:
    """Each written file's latency into `files` (saved_model/ is model.keras's graph), and
    every candidate's architecture's size and latency, all in one fresh process."""
    sides = {formats.STORED: manifest["image_size"], formats.SIZED: size}
    names = [n for n, f in files.items() if "error" not in f and n != formats.SAVED_MODEL]
    jobs = [latency.Job(n, n, str(out), sides[formats.TAKES[n]]) for n in names]
    _say(f"timing {len(jobs)} files and every candidate's architecture, batch 1 and 32")
    frame, rows = candidates.measured(pick.table, manifest, jobs)
    for row in rows:
        files[row["format"]][f"latency_b{row['batch']}"] = {
            k: row[k] for k in ("median_ms", "min_ms", "max_ms", "repeats")
        }
    return frame


def _say(text: str) -> None:
    print(f"export: {text}", file=sys.stderr, flush=True)
