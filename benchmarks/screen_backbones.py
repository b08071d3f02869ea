"""One process of `screen`: the digits backbones of known quality, as model files.

    python -m benchmarks.screen_backbones OUT EPOCHS [EPOCHS ...]

Run in a prepared digits workspace whose params.yaml lists the architectures under
`backbones` with `weights: source`. For each backbone `<name>` it writes
`OUT/<name>_random/backbone.keras` (the architecture built with the seed's random
weights, never trained; its BatchNorm statistics those of the source images) and, for
each EPOCHS, `OUT/<name>_<E>ep/backbone.keras`: pretrained on the source classes for E
epochs exactly as the backbone stage does it
(`pretrain.make_backbone`, `pretrain.save_backbone`). One process for them all: the stage
would start TensorFlow once per file, and `pretrain.epochs` is one key for every backbone.
Prints one JSON line: {file stem: {"source_accuracy": ...}}, a random one's that of a
linear probe on its frozen features (`pretrain.linear_probe_accuracy`), a pretrained one's
in inference mode after pretraining (with its "seconds").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline.data import datasets
from pipeline.paths import MANIFEST
from pipeline.preflight import load_params
from pipeline.train import devices, pretrain


def random_backbone(name: str, spec, manifest: dict, seed: int, out: Path) -> dict:
    """The architecture at the seed's random initial weights, never trained, its
    BatchNorm moving statistics set to the source images' (`recalibrate_batchnorm`, as
    pretraining does before its test): at their initial values (mean 0, variance 1) a
    random MobileNetV2 0.35's linear probe on the source classes was at chance (0.206);
    recalibrated, 0.294. Statistics, not training: no gradient step."""
    import keras

    from pipeline.models import backbones
    from pipeline.train.batchnorm import recalibrate_batchnorm

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    arch = spec.arch or name
    model = backbones.build(arch, manifest["image_size"], None, spec)
    preprocess = spec.preprocess or backbones.architecture(arch).preprocess
    source = datasets.load_splits(manifest, ("source_train",))["source_train"]
    recalibrate_batchnorm(model, backbones.preprocess(preprocess, source.images))
    meta = {"name": name, "weights": "random", "preprocess": preprocess}
    pretrain.save_backbone(model, meta, out)
    splits = datasets.load_splits(manifest, datasets.SOURCE_SPLITS)
    return {"source_accuracy": pretrain.linear_probe_accuracy(model, splits, preprocess)}


def pretrained_backbone(name: str, params, manifest: dict, epochs: int, out: Path) -> dict:
    import keras

    keras.backend.clear_session()
    start = time.perf_counter()
    settings = params.pretrain.model_copy(update={"epochs": epochs})
    model, meta = pretrain.make_backbone(
        name, params.backbones[name], manifest, settings, params.seed
    )
    seconds = time.perf_counter() - start
    pretrain.save_backbone(model, meta, out)
    return {"source_accuracy": meta["source_accuracy"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("epochs", type=int, nargs="+")
    args = parser.parse_args()
    params = load_params()
    devices.configure(params.seed, params.deterministic)  # as the backbone stage does
    manifest = datasets.read_manifest(MANIFEST)
    made = {}
    for name, spec in params.backbones.items():
        stem = f"{name}_random"
        made[stem] = random_backbone(name, spec, manifest, params.seed, args.out / stem)
        for epochs in args.epochs:
            stem = f"{name}_{epochs}ep"
            made[stem] = pretrained_backbone(name, params, manifest, epochs, args.out / stem)
    print(json.dumps(made))


if __name__ == "__main__":
    main()
