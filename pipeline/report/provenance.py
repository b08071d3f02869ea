"""Provenance: what the report was made from (the data, the backbones' weights, the device,
the search's trials and space, the packages), so that a reader can trust or redo it."""

from __future__ import annotations

import pandas as pd
import yaml

from pipeline.config import Params
from pipeline.report import blocks
from pipeline.report.tables import Tables


def provenance(params: Params, tables: Tables) -> str:
    found = tables.results
    manifest, trials = found.manifest, found.trials
    sources = "\n".join(
        f"  - `{name}`: {m['arch']}, {weights_origin(m, manifest['source_classes'])}"
        for name, m in found.metas.items()
    )
    space = yaml.safe_dump(
        params.search.model_dump(mode="json"), sort_keys=False, default_flow_style=None
    ).strip()
    devices = ", ".join(
        f"{d} ({k})"
        for d, k in found.runs[["device", "device_kind"]].drop_duplicates().itertuples(index=False)
    )
    determinism = (
        "on: the same params give the same numbers"
        if params.deterministic
        else "off (`deterministic: false`): runs may differ in the last digits and in what follows"
    )
    return f"""## Provenance

{dataset_text(manifest)}
{folder_text(manifest)}
{blocks.table(per_class_table(manifest))}

- **Backbones** and where their weights came from:
{sources}
- **Device**: {devices}. **Repeatability**: seed {params.seed}; TensorFlow op
  determinism {determinism}.
- **Search trials** per backbone (completed ones count toward `sweep.n_trials`,
  completed and pruned toward the cap `sweep.max_trials`; pruned: stopped early by the
  pruner; failed: see `fail_reason` in `reports/trials.csv`):

{blocks.table(trial_states(trials).reset_index())}
{_fail_reasons(trials)}
- **Search space** (`search` in params.yaml):

```yaml
{space}
```

- **Packages**: {", ".join(f"{k} {v}" for k, v in found.versions.items())}.
"""


def dataset_text(manifest: dict) -> str:
    """Which dataset, at what size, which classes, how many images per split."""
    counts = manifest["counts"]
    split_text = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    tfds = f"{manifest['tfds_name']} {manifest['tfds_version']}"
    return f"""- **Dataset**: `{manifest["dataset"]}` via TFDS (`{tfds}`), images at
  {manifest["image_size"]} px ({manifest.get("resize", "crop")} to a square); source classes
  {_class_list(manifest, "source_classes")}, target classes
  {_class_list(manifest, "target_classes")}. Split sizes: {split_text}."""


def trial_states(trials: pd.DataFrame) -> pd.DataFrame:
    """Per backbone: trials completed, pruned and failed, workers, and trials per worker."""
    states = trials.groupby(["backbone", "state"]).size().unstack(fill_value=0)
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        if state not in states:
            states[state] = 0
    states = states[["COMPLETE", "PRUNED", "FAIL"]].rename(
        columns={"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed"}
    )
    states["workers"] = trials.groupby("backbone").worker.nunique()
    states["trials per worker"] = trials.groupby("backbone").apply(_per_worker)
    return states


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
