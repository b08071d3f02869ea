"""Stage `final@<name>`: the search's best configurations, retrained over seeds, tested once.

    python -m pipeline.stages.final <name>

The search chose by validation accuracy, so its best value is optimistic. For
each of the top `report.top_k` completed trials, and each strategy's best
trial (so strategies compare on test too), this stage replays the trial's
schedule (its phases for the epochs it ran them, up to the epoch of its best
validation accuracy) on train+val with `report.seeds` seeds, and evaluates
once on the held-out test split. It also trains the backbone from scratch with
the same budget (baselines.py) and traces the freeze-depth curve
(depth_curve.py). Writes `results/final/<name>/runs.csv`, `depth.csv` and
`summary.json` (`screened_out.json` for a backbone the screen left out).
"""

from __future__ import annotations

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.evaluate import retrain
from pipeline.evaluate.ranking import TRANSFER
from pipeline.paths import FINAL_DIR, MANIFEST
from pipeline.screen import decision
from pipeline.stages import backbone_stage_args


def main() -> None:
    name, params = backbone_stage_args(__doc__)
    if decision.screened_out(name):
        decision.mark_screened_out(name, FINAL_DIR / name)
        print(f"final {name}: screened out (results/screen/pairs.csv), nothing to retrain")
        return
    manifest = datasets.read_manifest(MANIFEST)
    runs = retrain.run_final(name, params, manifest, FINAL_DIR / name)
    winner = runs[(runs.kind == TRANSFER) & (runs["rank"] == 1)].test_accuracy
    print(
        f"final {name}: this backbone's winner on validation (rank 1): test accuracy "
        f"{winner.mean():.3f} ± {winner.std():.3f} over {len(winner)} seeds"
    )


if __name__ == "__main__":
    run_main(main)
