"""A pretrained backbone and its meta.json record: built with ImageNet weights, loaded
from a model file, or pretrained here on the source classes, and checked to be better
than chance on them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pipeline.config import BackboneParams, PretrainParams
from pipeline.data import datasets
from pipeline.errors import ThawError
from pipeline.models import backbones, freezing, weights_file
from pipeline.train import loop
from pipeline.train.batchnorm import batchnorm_layers, recalibrate_batchnorm

# Pretrained features are useless if the source task itself was not learned;
# below this multiple of chance the stage stops instead of sweeping noise.
MIN_ACCURACY_OVER_CHANCE = 2.0


class PretrainingError(ThawError):
    """Source pretraining left features no better than chance."""


def pretrain(
    backbone, source: dict[str, datasets.Split], preprocess: str, params: PretrainParams, seed: int
) -> float:
    """Train backbone + linear head on the source classes; return inference-mode accuracy.

    The sweep's lean loop (loop.py), with BatchNorm in training mode as usual for a
    network trained from scratch: `model.fit` spent ~14 s tracing MobileNetV2 here,
    more than the epochs themselves. Precise BatchNorm statistics before the test.
    """
    import keras

    from pipeline.models.classifier import Classifier, Head

    keras.utils.set_random_seed(seed)
    num_classes = int(source["source_train"].labels.max()) + 1
    dims = backbone.input_shape[1:]
    head = Head(0, num_classes, False, backbone.output_shape[1:])
    head.reset(seed)
    model = Classifier(backbone, head, dims, features_train_mode=True)
    layers = batchnorm_layers(backbone)
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = params.bn_momentum
    train_x = backbones.preprocess(preprocess, source["source_train"].images)
    step = loop.Step(model, dims, params.learning_rate)
    run = loop.run_epochs(
        step,
        (train_x, source["source_train"].labels),
        None,
        epochs=params.epochs,
        batch_size=params.batch_size,
        seed=seed,
    )
    recalibrate_batchnorm(backbone, train_x)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum
    val_x = backbones.preprocess(preprocess, source["source_val"].images)
    accuracy = loop.accuracy(step, val_x, source["source_val"].labels)  # inference mode
    print(
        f"pretrained {params.epochs} epochs in {run.seconds:.1f} s; source val accuracy "
        f"{accuracy:.3f}",
        flush=True,
    )
    return accuracy


def linear_probe_accuracy(backbone, source: dict[str, datasets.Split], preprocess: str) -> float:
    """Source accuracy of a logistic regression on frozen, inference-mode features."""
    from sklearn.linear_model import LogisticRegression

    def features(split: datasets.Split) -> np.ndarray:
        out = loop.outputs(backbone, backbones.preprocess(preprocess, split.images))
        return out.reshape(len(out), -1, out.shape[-1]).mean(axis=1) if out.ndim == 4 else out

    probe = LogisticRegression(max_iter=2000)
    probe.fit(features(source["source_train"]), source["source_train"].labels)
    return float(probe.score(features(source["source_val"]), source["source_val"].labels))


def load_model_file(path: str, image_size: int):
    import keras

    model = keras.models.load_model(path, compile=False)
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] != 3:
        raise ThawError(
            f"weights: {path}: expected an image model with input (H, W, 3), "
            f"got input shape {shape}"
        )
    if shape[1] not in (None, image_size) or shape[2] not in (None, image_size):
        raise ThawError(
            f"weights: {path} takes {shape[1]}x{shape[2]} images but "
            f"data.image_size is {image_size}; set data.image_size to match"
        )
    if shape[1] is None or shape[2] is None:  # any size: fix it, so every layer's shape is known
        return backbones.at_size(model, image_size)
    return model


def _near_chance_advice(weights: str) -> str:
    """What the user can change for the weights they gave: pretrain.* only trains
    `source` backbones; ImageNet weights and model files are used as they are."""
    if weights == "source":
        return (
            "Raise pretrain.epochs or pretrain.learning_rate, or check the BatchNorm "
            "statistics of the weights."
        )
    if weights == "imagenet":
        return (
            "ImageNet features may not suit these images at this size: raise "
            "data.image_size, or use weights: source."
        )
    return (
        f"Check that {weights} holds trained weights with their BatchNorm moving "
        "statistics, and that the backbone's `preprocess` is the scaling it was trained "
        f"with (accepted: {sorted(backbones.PREPROCESSORS)}; default for a model file: "
        "unit, [0, 1]; for a weights-only file, the architecture's own)."
    )


def make_backbone(
    name: str, spec: BackboneParams, manifest: dict, pretrain_params: PretrainParams, seed: int
) -> tuple[object, dict]:
    """The backbone model and its meta.json record."""
    import keras

    image_size = manifest["image_size"]
    source = (
        datasets.load_splits(manifest, datasets.SOURCE_SPLITS)
        if manifest["source_classes"]
        else None
    )
    keras.utils.set_random_seed(seed)  # the initial weights too: same seed, same backbone
    arch = spec.arch or name
    if weights_file.model_path(spec) is None:
        preprocess = spec.preprocess or backbones.architecture(arch).preprocess
        # None: random, to pretrain; "imagenet": Keras's download; or a weights-only file
        weights = None if spec.weights == "source" else spec.weights
        backbone = backbones.build(arch, image_size, weights, spec)
    else:
        arch, preprocess = Path(spec.weights).name, spec.preprocess or "unit"
        backbone = load_model_file(spec.weights, image_size)
    if spec.weights == "source":
        accuracy, method = (
            pretrain(backbone, source, preprocess, pretrain_params, seed),
            "pretrained",
        )
    elif source is not None:
        accuracy, method = linear_probe_accuracy(backbone, source, preprocess), "linear_probe"
    else:  # no source classes (a folder whose every class is a target): nothing to probe
        accuracy, method = None, "none"
    chance = 1.0 / max(len(manifest["source_classes"]), 1)
    if accuracy is not None and accuracy < MIN_ACCURACY_OVER_CHANCE * chance:
        raise PretrainingError(
            f"backbone {name!r}: source accuracy {accuracy:.3f} in inference mode is near chance "
            f"({chance:.2f}); its features would be noise. {_near_chance_advice(spec.weights)}"
        )
    cuts = freezing.cut_points(backbone)
    meta = {
        "name": name,
        "arch": arch,
        "weights": spec.weights,
        "preprocess": preprocess,
        "image_size": image_size,
        "total_params": freezing.param_count(backbone.weights),
        "num_layers": len(backbone.layers),
        "source_accuracy": accuracy,
        "source_accuracy_method": method,
        "cut_points": [
            {
                "layer": c.layer,
                "position": c.position,
                "frozen_fraction": round(c.frozen_fraction, 6),
            }
            for c in cuts
        ],
    }
    return backbone, meta


def content_digest(model) -> str:
    """sha256 of a model's architecture and weight values: what a study and the activation
    cache are keyed on. Not the file's bytes: a .keras file records its save date, so the
    same weights saved twice hash differently, and a re-run stage would start its sweep
    over instead of resuming it."""
    h = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        array = np.ascontiguousarray(weight.numpy())
        h.update(f"{weight.path}|{array.dtype}|{array.shape}".encode())
        h.update(array.data)
    return h.hexdigest()


def save_backbone(backbone, meta: dict, out: Path) -> None:
    """backbone.keras plus meta.json, which records its content digest (`content_digest`)."""
    out.mkdir(parents=True, exist_ok=True)
    backbone.save(out / "backbone.keras")
    stable_keras_file(out / "backbone.keras")
    meta["sha256"] = content_digest(backbone)
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the zip format's earliest


def canonical_shared_ids(config):
    """`config` with each `shared_object_id` (Keras writes the shared object's id(), a
    memory address that changes from process to process) numbered 1, 2, ... in order
    of first appearance: the same objects stay shared, the bytes stop changing."""
    numbers: dict = {}

    def walk(node):
        if isinstance(node, dict):
            return {
                k: numbers.setdefault(v, len(numbers) + 1) if k == "shared_object_id" else walk(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


def stable_keras_file(path: Path) -> None:
    """Rewrite a .keras file (a zip) without its save date, the entries' times and the
    shared objects' memory addresses, so the same model gives the same bytes in every
    process and DVC sees no change downstream."""
    import zipfile

    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist()]
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w") as target:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode()
            elif info.filename == "config.json":
                data = json.dumps(canonical_shared_ids(json.loads(data))).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            target.writestr(fixed, data)
    partial.replace(path)
