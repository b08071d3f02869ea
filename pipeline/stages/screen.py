"""Stage `screen`: every backbone's scores ranked, and which go on to full sweeps.

    python -m pipeline.stages.screen

Reads each backbone's candidates (`results/screen/scores/<name>.csv`, stage `score@<name>`),
ranks the (backbone, input size) pairs by `sweep.screen.score`, each by its best cut, and
sends the top `sweep.screen.keep` on to the sweeps (`all`: every one). Writes
`results/screen/pairs.csv` and `results/screen/decisions/<name>.json`, which each
`sweep@<name>` and `final@<name>` reads.
"""

from __future__ import annotations

import shutil

from pipeline.errors import run_main
from pipeline.paths import SCREEN_DIR
from pipeline.preflight import load_params
from pipeline.screen import decision


def main() -> None:
    params = load_params()
    names = list(params.backbones)
    scores = decision.read_scores(names)
    pairs = decision.ranked_pairs(scores, params.sweep.screen.score)
    decisions = decision.decide(scores, params.sweep.screen, names)
    shutil.rmtree(SCREEN_DIR / "decisions", ignore_errors=True)  # a removed backbone's too
    pairs.to_csv(SCREEN_DIR / "pairs.csv", index=False)
    decision.write(decisions)
    swept = [n for n, d in decisions.items() if d.swept]
    out = [n for n, d in decisions.items() if not d.swept]
    print(
        f"screen: {len(pairs)} (backbone, size) pairs ranked by {params.sweep.screen.score}; "
        f"{', '.join(swept)} go on to sweeps" + (f"; screened out: {', '.join(out)}" if out else "")
    )


if __name__ == "__main__":
    run_main(main, tensorflow=False)
