"""Optuna studies: their names, their storage, and their trials as a table.

A study's name carries a hash of everything that changes what a trial
computes (backbone file, data manifest, search space, epochs, batch size,
seed). Re-running the same configuration finds the same study and resumes
it; changing any of these starts a fresh one, so trials never mix.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from pipeline.config import SearchParams
from pipeline.paths import STUDIES_DIR
from pipeline.search import urls

FINISHED = ("COMPLETE", "PRUNED")


def identity(backbone_sha256: str, manifest_sha256: str, search: SearchParams, seed: int) -> dict:
    """What a trial's result depends on; the study name hashes it, the study keeps it."""
    return {
        "backbone_sha256": backbone_sha256,
        "manifest_sha256": manifest_sha256,
        "search": search.model_dump(mode="json"),
        "seed": seed,
    }


def study_name(backbone: str, inputs: dict) -> str:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return f"{backbone}-{digest[:12]}"


def code_digest(folder: Path = Path(__file__).parent) -> str:
    """The pipeline package's source, sub-packages included, hashed: workers must run the
    coordinator's code. Paths are relative and POSIX, so a flat package hashes as before."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py"), key=lambda p: p.relative_to(folder).as_posix()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def write_pointer(backbone: str, name: str, url: str) -> None:
    """Record which study the backbone's sweep uses, for `thaw status`."""
    folder = STUDIES_DIR / backbone
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.json").write_text(
        json.dumps({"study_name": name, "storage": urls.mask(url)}) + "\n"
    )


def read_pointer(backbone: str) -> dict | None:
    path = STUDIES_DIR / backbone / "study.json"
    return json.loads(path.read_text()) if path.is_file() else None


def count_finished(study) -> int:
    return sum(t.state.name in FINISHED for t in study.get_trials(deepcopy=False))


# Trial attributes the objective records (see sweep.run_trial), copied into the table.
RECORDED_ATTRS = [
    "strategy", "plan", "frozen_fraction", "fine_tunes", "phases", "trainable_params",
    "max_trainable_params", "frozen_params", "total_params", "device_kind", "device",
    "device_seconds", "train_flops", "stopped", "pruned_at_epoch", "cached_phases",
    "last_phase_from", "worker", "retry_of", "val_loss", "class_weight",
]  # fmt: skip
TRIAL_COLUMNS = [
    "backbone", "trial", "state", "image_size", "augmentation", "freeze_depth", "head_units",
    "learning_rate", "val_accuracy", "val_accuracy_per_epoch", "epochs_run", *RECORDED_ATTRS,
    "phase_epochs", "params", "fail_reason", "val_correct",
]  # fmt: skip


def trials_table(study, backbone: str) -> pd.DataFrame:
    """One row per trial, every state, with the attributes the objective recorded."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        per_epoch = attrs.get("val_accuracy_per_epoch", [])
        value = t.value if t.value is not None else (max(per_epoch) if per_epoch else math.nan)
        rows.append(
            {
                "backbone": backbone,
                "trial": t.number,
                "state": t.state.name,
                "image_size": t.params.get("image_size"),
                "augmentation": t.params.get("augmentation"),
                "freeze_depth": t.params.get("freeze_depth"),
                "head_units": t.params.get("head_units"),
                "learning_rate": t.params.get("learning_rate"),
                "val_accuracy": value,
                "val_accuracy_per_epoch": ";".join(f"{a:.4f}" for a in per_epoch),
                "epochs_run": len(per_epoch),
                "params": json.dumps(t.params, sort_keys=True),
                "fail_reason": attrs.get("fail_reason", "") if t.state.name == "FAIL" else "",
                **{k: attrs.get(k) for k in RECORDED_ATTRS},
                "phase_epochs": json.dumps(attrs.get("phase_epochs", [])),
                "val_correct": attrs.get("val_correct", ""),  # "1"/"0" per val image, best epoch
            }
        )
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def importances(study, seed: int = 0) -> dict:
    """Optuna's fANOVA importance of each parameter that every completed trial has.

    Empty when fewer than two trials completed (nothing to compare); the reason
    is kept so the report can say why.
    """
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {"importances": {}, "note": f"{len(complete)} completed trial(s): too few"}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as exc:  # e.g. every trial has the same parameters
        return {"importances": {}, "note": f"{type(exc).__name__}: {exc}"}
    return {"importances": {k: float(v) for k, v in values.items()}, "note": ""}
