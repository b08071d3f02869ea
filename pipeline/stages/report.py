"""Stage `report`: one document that answers the question, honestly.

    python -m pipeline.stages.report

Reads the sweeps (`results/sweep/<name>/`), the final retraining runs and
baselines (`results/final/<name>/`, `results/baseline/`), the data manifest and
the backbones' metadata. Writes `reports/report.md` with the PNG figures it
embeds, the CSVs behind them (also declared as DVC plots), `reports/trials.csv`
(every search trial) and `reports/metrics.json` (for `dvc metrics show` and
`dvc exp show`).
"""

from __future__ import annotations

import json

from pipeline.config import load_params
from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.paths import FINAL_DIR, LINEAR_BASELINE, MANIFEST, MODELS_DIR, REPORTS_DIR, SWEEP_DIR
from pipeline.report import plots, tables
from pipeline.report.markdown import FIGURES, markdown


def main() -> None:
    params = load_params()
    names = list(params.backbones)
    trials = tables.load_trials(names, SWEEP_DIR)
    runs = tables.load_runs(names, FINAL_DIR, LINEAR_BASELINE)
    table = tables.headline(runs)
    curve = tables.depth_curve(tables.load_depth_curves(names, FINAL_DIR))
    importances = tables.load_importances(names, SWEEP_DIR)
    manifest = datasets.read_manifest(MANIFEST)
    metas = {n: json.loads((MODELS_DIR / n / "meta.json").read_text()) for n in names}
    REPORTS_DIR.mkdir(exist_ok=True)
    trials.to_csv(REPORTS_DIR / "trials.csv", index=False)
    runs.to_csv(REPORTS_DIR / "final_runs.csv", index=False)
    table.to_csv(REPORTS_DIR / "headline.csv", index=False)
    curve.to_csv(REPORTS_DIR / "depth_curve.csv", index=False)
    importances.to_csv(REPORTS_DIR / "importances.csv", index=False)
    metrics = tables.metrics(table, tables.imbalanced(manifest))
    (REPORTS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    unit = tables.device_label(runs.device_kind)
    plots.accuracy_vs_cost(
        table, "trainable_params", "params", "trainable parameters", REPORTS_DIR / FIGURES["params"]
    )
    plots.accuracy_vs_cost(
        table, "device_seconds", "time", f"{unit} per run", REPORTS_DIR / FIGURES["time"]
    )
    plots.depth_curve(curve, REPORTS_DIR / FIGURES["depth"])
    plots.importances(importances, REPORTS_DIR / FIGURES["importances"])
    (REPORTS_DIR / "report.md").write_text(
        markdown(params, trials, table, curve, importances, manifest, metas, runs)
    )
    print(f"report: {len(table)} configurations over {len(names)} backbones -> reports/report.md")


if __name__ == "__main__":
    run_main(main, tensorflow=False)
