"""What every candidate of the headline would cost to run: each distinct architecture
(backbone, input size, head) built as the served model (export.build), saved as
model.keras for its size on disk, and timed by winner/latency.py beside the
recommendation's own files. The weights are random: size and latency depend on the
architecture, not on the weights' values."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.evaluate.ranking import TRANSFER
from pipeline.models import backbones
from pipeline.paths import MODELS_DIR
from pipeline.winner import export, formats, latency

KEYS = ["backbone", "image_size", "head_units"]


def architectures(table: pd.DataFrame) -> pd.DataFrame:
    """The headline's transferred rows' distinct architectures (the probe is a linear head)."""
    rows = table[(table.kind == TRANSFER) & (table.backbone != "") & table.image_size.notna()]
    found = rows[KEYS].astype({"image_size": int, "head_units": int}).drop_duplicates()
    return found.reset_index(drop=True)


def saved(archs: pd.DataFrame, manifest: dict, folder: Path) -> list[tuple[dict, latency.Job]]:
    """Each architecture as model.keras under its own folder, with its latency job."""
    import keras

    num_classes, jobs, loaded = len(manifest["target_classes"]), [], {}
    rng = np.random.default_rng(0)
    for i, arch in enumerate(archs.to_dict("records")):
        name = arch["backbone"]
        if name not in loaded:
            loaded[name] = keras.models.load_model(MODELS_DIR / name / "backbone.keras",
                                                   compile=False)  # fmt: skip
        backbone = backbones.at_size(loaded[name], arch["image_size"])
        meta = _meta(name)
        head = random_head(backbone.output_shape[-1], arch["head_units"], num_classes, rng)
        where = folder / str(i)
        where.mkdir()
        export.build(backbone, head, meta, manifest).save(where / formats.FILES[formats.KERAS])
        arch = {**arch, "keras_bytes": formats.size_bytes(where / formats.FILES[formats.KERAS])}
        jobs.append((arch, latency.Job(str(i), formats.KERAS, str(where), manifest["image_size"])))
    return jobs


def measured(
    table: pd.DataFrame, manifest: dict, extra: list[latency.Job]
) -> tuple[pd.DataFrame, list[dict]]:
    """The candidates' sizes and latencies, and `extra` jobs' rows (the recommendation's
    files), all timed in one process, one after another."""
    with tempfile.TemporaryDirectory() as scratch:
        jobs = saved(architectures(table), manifest, Path(scratch))
        rows = latency.measure([j for _, j in jobs] + extra)
    by_key = {}
    for row in rows:
        by_key.setdefault(row["key"], {})[row["batch"]] = row
    frame = pd.DataFrame([{**arch, **_columns(by_key[job.key])} for arch, job in jobs])
    return frame, [r for r in rows if r["key"] not in {j.key for _, j in jobs}]


def _columns(by_batch: dict[int, dict]) -> dict:
    out = {}
    for batch, row in by_batch.items():
        out.update({f"latency_b{batch}_ms": row["median_ms"], f"latency_b{batch}_min_ms":
                    row["min_ms"], f"latency_b{batch}_max_ms": row["max_ms"]})  # fmt: skip
    return out


def random_head(width: int, units: int, num_classes: int, rng) -> list[export.Dense]:
    shapes = [(width, units), (units, num_classes)] if units else [(width, num_classes)]
    acts = ["relu", "softmax"][-len(shapes) :]
    return [export.Dense(rng.normal(0, 0.01, s).astype(np.float32), np.zeros(s[1], np.float32), a)
            for s, a in zip(shapes, acts)]  # fmt: skip


def _meta(name: str) -> dict:
    import json

    return json.loads((MODELS_DIR / name / "meta.json").read_text())
