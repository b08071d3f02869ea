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

from pipeline.errors import run_main
from pipeline.paths import REPORTS_DIR
from pipeline.preflight import load_params
from pipeline.report import plots, results, tables
from pipeline.report.markdown import markdown


def main() -> None:
    params = load_params()
    names = list(params.backbones)
    found = results.read(names)
    made = tables.build(found)
    REPORTS_DIR.mkdir(exist_ok=True)
    found.trials.to_csv(REPORTS_DIR / "trials.csv", index=False)
    found.runs.to_csv(REPORTS_DIR / "final_runs.csv", index=False)
    made.headline.to_csv(REPORTS_DIR / "headline.csv", index=False)
    made.depth_curve.to_csv(REPORTS_DIR / "depth_curve.csv", index=False)
    found.importances.to_csv(REPORTS_DIR / "importances.csv", index=False)
    metrics = tables.metrics(made.headline, tables.imbalanced(found.manifest))
    (REPORTS_DIR / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plots.draw(made, REPORTS_DIR)
    report = REPORTS_DIR / "report.md"
    report.write_text(markdown(params, made))
    print(f"report: {len(made.headline)} configurations over {len(names)} backbones -> {report}")


if __name__ == "__main__":
    run_main(main, tensorflow=False)
