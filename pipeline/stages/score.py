"""Stage `score@<name>`: one backbone's candidates scored before any sweep, with no training.

    python -m pipeline.stages.score <name>

For every input size and candidate cut of backbone `name`, the frozen prefix's pooled
features of train and val are scored: LogME evidence, k-NN accuracy and the converged
linear probe's accuracy (pipeline/screen/). The activations land in the cache under
results/cache/<name>/, where the sweep reads them. Writes `results/screen/scores/<name>.csv`;
the `screen` stage ranks every backbone's scores.
"""

from __future__ import annotations

import time

import pandas as pd

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.paths import MANIFEST
from pipeline.screen import candidates, decision
from pipeline.stages import backbone_stage_args


def main() -> None:
    name, params = backbone_stage_args(__doc__)
    start = time.perf_counter()
    rows = candidates.score_backbone(name, params, datasets.read_manifest(MANIFEST))
    scores = pd.DataFrame(rows, columns=candidates.COLUMNS)
    path = decision.scores_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(path, index=False)
    best = scores.sort_values(params.sweep.screen.score, ascending=False).iloc[0]
    print(
        f"score {name}: {len(scores)} candidates in {time.perf_counter() - start:.1f} s; best by "
        f"{params.sweep.screen.score}: {best.layer} at {best.image_size} px "
        f"({best[params.sweep.screen.score]:.3f})"
    )


if __name__ == "__main__":
    run_main(main)
