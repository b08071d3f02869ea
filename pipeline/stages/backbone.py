"""Stage `backbone@<name>`: make a pretrained backbone and describe its cut points.

    python -m pipeline.stages.backbone <name>

`weights: source` pretrains a fresh backbone on the source classes (the
offline default); `imagenet` downloads Keras's weights; a `.keras`/`.h5` path
loads that model. Writes `models/<name>/backbone.keras` and `meta.json`
(architecture, parameter count, cut points, source accuracy in inference mode).
"""

from __future__ import annotations

from pipeline.data import datasets
from pipeline.errors import run_main
from pipeline.paths import MANIFEST, MODELS_DIR
from pipeline.stages import backbone_stage_args
from pipeline.train import devices, pretrain


def main() -> None:
    name, params = backbone_stage_args(__doc__)
    devices.configure(params.seed, params.deterministic)
    manifest = datasets.read_manifest(MANIFEST)
    backbone, meta = pretrain.make_backbone(
        name, params.backbones[name], manifest, params.pretrain, params.seed
    )
    pretrain.save_backbone(backbone, meta, MODELS_DIR / name)
    print(
        f"backbone {name}: {meta['arch']}, {meta['total_params']:,} parameters, "
        f"{len(meta['cut_points'])} cut points, " + _source_text(meta)
    )


def _source_text(meta: dict) -> str:
    if meta["source_accuracy"] is None:
        return "no source task to check it on"
    return f"source accuracy {meta['source_accuracy']:.3f} ({meta['source_accuracy_method']})"


if __name__ == "__main__":
    run_main(main)
