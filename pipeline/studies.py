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
import warnings
from pathlib import Path

import pandas as pd

from pipeline.config import SearchParams

STUDIES_DIR = Path("results/optuna")
FINISHED = ("COMPLETE", "PRUNED")


def study_name(
    backbone: str, backbone_sha256: str, manifest_sha256: str, search: SearchParams, seed: int
) -> str:
    identity = {
        "backbone_sha256": backbone_sha256,
        "manifest_sha256": manifest_sha256,
        "search": search.model_dump(mode="json"),
        "seed": seed,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{backbone}-{digest[:12]}"


def storage_url(storage: str, backbone: str) -> str:
    """'default' is one SQLite file per backbone, so DVC stages never share an output."""
    if storage == "default":
        path = STUDIES_DIR / backbone / "study.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return storage


def open_storage(url: str):
    """RDB storage with heartbeats: a dead worker's trial is marked failed and retried once."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from pipeline.errors import ThawError

    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, stable since 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=30,
                grace_period=120,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except Exception as exc:
            raise ThawError(
                f"sweep.storage = {_mask(url)!r} could not be opened ({type(exc).__name__}: "
                f"{exc}). Use 'default' (a SQLite file under results/optuna/) or a reachable "
                "SQLAlchemy URL."
            ) from exc


def _mask(url: str) -> str:
    """The URL without its password, fit to print or write to a file."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def write_pointer(backbone: str, name: str, url: str) -> None:
    """Record which study the backbone's sweep uses, for `thaw status`."""
    folder = STUDIES_DIR / backbone
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.json").write_text(
        json.dumps({"study_name": name, "storage": _mask(url)}) + "\n"
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
    "last_phase_from",
]  # fmt: skip
TRIAL_COLUMNS = [
    "backbone", "trial", "state", "freeze_depth", "head_units", "learning_rate",
    "val_accuracy", "val_accuracy_per_epoch", "epochs_run", *RECORDED_ATTRS, "phase_epochs",
    "params", "fail_reason",
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
                "freeze_depth": t.params.get("freeze_depth"),
                "head_units": t.params.get("head_units"),
                "learning_rate": t.params.get("learning_rate"),
                "val_accuracy": value,
                "val_accuracy_per_epoch": ";".join(f"{a:.4f}" for a in per_epoch),
                "epochs_run": len(per_epoch),
                "params": json.dumps(t.params, sort_keys=True),
                "fail_reason": attrs.get("fail_reason", t.system_attrs.get("fail_reason", "")),
                **{k: attrs.get(k) for k in RECORDED_ATTRS},
                "phase_epochs": json.dumps(attrs.get("phase_epochs", [])),
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
