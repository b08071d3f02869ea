"""Stage `sweep@<name>`: an Optuna study over freezing strategy, head and learning rate.

    python -m pipeline.stages.sweep <name>

Reads `seed`, `search` and `sweep` from params.yaml, the backbone from
`models/<name>/` and the target splits from the manifest. The stage is the
study's coordinator: it creates the study once in `sweep.storage` (or
`THAW_STORAGE`), starts `sweep.workers - 1` local workers, runs trials itself,
and waits until the study holds `sweep.n_trials` completed trials with every
strategy at its minimum, or its cap of finished ones (budget.py), counting the
trials of `thaw worker` processes on other machines too. An interrupted run
resumes where it stopped. Writes `results/sweep/<name>/trials.csv` and `best.json`; a
backbone the screen stage left out gets `screened_out.json` instead.
"""

from __future__ import annotations

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.paths import MANIFEST, STUDIES_DIR, SWEEP_DIR
from pipeline.screen import decision
from pipeline.search import coordinator
from pipeline.stages import backbone_stage_args


def main() -> None:
    name, params = backbone_stage_args(__doc__)
    if decision.screened_out(name):
        decision.mark_screened_out(name, SWEEP_DIR / name, STUDIES_DIR / name)
        print(f"sweep {name}: screened out (results/screen/pairs.csv), not swept")
        return
    manifest = datasets.read_manifest(MANIFEST)
    study, meta = coordinator.sweep(name, params, manifest)
    summary = coordinator.write_results(name, study, meta, SWEEP_DIR / name)
    print(
        f"sweep {name}: best val accuracy {summary['val_accuracy']:.3f} with "
        f"{summary['plan']}, {summary['trainable_params']:,} trainable parameters"
    )


if __name__ == "__main__":
    run_main(main)
