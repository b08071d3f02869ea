"""Stage `weights`: fingerprint each backbone's weights file, so DVC sees it replaced.

    python -m pipeline.stages.weights

DVC cannot take `backbones.<name>.weights` as a dependency: for `source` and
`imagenet` it names no file. This stage runs on every `dvc repro`
(`always_changed`; hashing takes well under a second) and writes
`data/weights/<name>.json` with the file's sha256. `backbone@<name>` depends on
that file, so a model or weights file overwritten in place re-runs that backbone's stages
and nothing else; an unchanged one re-runs nothing.
"""

from __future__ import annotations

import json

from pipeline.config import BackboneParams
from pipeline.data.datasets import file_digest
from pipeline.errors import run_main
from pipeline.paths import WEIGHTS_DIR
from pipeline.preflight import load_params


def fingerprint(spec: BackboneParams) -> dict:
    path = spec.file
    return {"weights": spec.weights, "sha256": None if path is None else file_digest(path)}


def main() -> None:
    params = load_params()
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, spec in params.backbones.items():
        (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(fingerprint(spec), indent=1) + "\n")


if __name__ == "__main__":
    run_main(main, tensorflow=False)
