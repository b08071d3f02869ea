"""One module per DVC stage, each a `main()` over the engine:
`python -m pipeline.stages.<stage>`."""

from __future__ import annotations

import argparse

from pipeline.config import Params
from pipeline.errors import ParamsError
from pipeline.preflight import load_params


def backbone_stage_args(doc: str, argv: list[str] | None = None) -> tuple[str, Params]:
    """`python -m pipeline.stages.<stage> <name>`: the backbone's name, checked, and the
    params."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("name", help="a key of `backbones` in params.yaml")
    name = parser.parse_args(argv).name
    params = load_params()
    if name not in params.backbones:
        raise ParamsError(
            f"backbone {name!r} is not in params.yaml; known: {sorted(params.backbones)}"
        )
    return name, params
