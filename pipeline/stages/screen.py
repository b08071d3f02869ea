"""Stage `screen`: score every backbone's frozen features, then decide which go on to sweeps.

    python -m pipeline.stages.screen

For every backbone, input size and candidate cut, the frozen prefix's pooled features of
train and val are scored with no training: LogME evidence, k-NN accuracy and the
converged linear probe's accuracy (pipeline/screen/). `sweep.screen.score` ranks the
(backbone, size) pairs and the top `sweep.screen.keep` go on (`all`: every one). The
activations land in the cache under results/cache/<backbone>/, where the sweep reads them.
Writes `results/screen/scores.csv`, `pairs.csv` and `decisions/<backbone>.json`.
"""

from __future__ import annotations

import shutil
import sys
import time

import pandas as pd

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.paths import MANIFEST, SCREEN_DIR
from pipeline.preflight import load_params
from pipeline.screen import candidates, decision


def main() -> None:
    params = load_params()
    manifest = datasets.read_manifest(MANIFEST)
    rows, start = [], time.perf_counter()
    for name in params.backbones:
        found = candidates.score_backbone(name, params, manifest)
        rows += found
        print(f"[screen {name}] {len(found)} candidates scored", file=sys.stderr)
    scores = pd.DataFrame(rows, columns=candidates.COLUMNS)
    pairs = decision.ranked_pairs(scores, params.sweep.screen.score)
    decisions = decision.decide(scores, params.sweep.screen, list(params.backbones))
    shutil.rmtree(SCREEN_DIR, ignore_errors=True)  # a removed backbone's decision goes too
    SCREEN_DIR.mkdir(parents=True)
    scores.to_csv(SCREEN_DIR / "scores.csv", index=False)
    pairs.to_csv(SCREEN_DIR / "pairs.csv", index=False)
    decision.write(decisions)
    swept = [n for n, d in decisions.items() if d.swept]
    print(
        f"screen: {len(scores)} candidates in {time.perf_counter() - start:.1f} s; "
        f"by {params.sweep.screen.score}, {', '.join(swept)} go on to sweeps"
        + _screened_out(decisions)
    )


def _screened_out(decisions: dict[str, decision.Decision]) -> str:
    out = [n for n, d in decisions.items() if not d.swept]
    return f"; screened out: {', '.join(out)}" if out else ""


if __name__ == "__main__":
    run_main(main)
