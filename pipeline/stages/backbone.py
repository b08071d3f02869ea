"""Stage `backbone@<name>`: make a pretrained backbone and describe its cut points.

    python -m pipeline.stages.backbone <name>

`weights: source` pretrains a fresh backbone on the source classes (the
offline default); `imagenet` downloads Keras's weights; a `.keras`/`.h5` path
loads that model. Writes `models/<name>/backbone.keras` and `meta.json`
(architecture, parameter count, cut points, source accuracy in inference mode).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.config import BackboneParams, PretrainParams, backbone_stage_args
from pipeline.data import datasets
from pipeline.errors import ThawError, run_main
from pipeline.models import backbones, freezing
from pipeline.paths import MANIFEST, MODELS_DIR
from pipeline.train import devices

# Pretrained features are useless if the source task itself was not learned;
# below this multiple of chance the stage stops instead of sweeping noise.
MIN_ACCURACY_OVER_CHANCE = 2.0


class PretrainingError(ThawError):
    """Source pretraining left features no better than chance."""


def batchnorm_layers(model) -> list:
    import keras

    return [
        layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def recalibrate_batchnorm(model, images, chunk: int = 256, passes: dict | None = None) -> None:
    """Set every BN layer's moving statistics to the population statistics of `images`.

    keras.applications BN layers use momentum 0.999: after a few hundred steps
    their moving averages are still near their initial values and the network
    in inference mode gives chance-level features. One pass in training mode
    with momentum k/(k+1) on the k-th chunk leaves each moving statistic the
    average over all chunks ("precise BN").

    With `passes` (a dict kept by the caller), each chunk's pass is traced once, with
    its momentum baked in, and reused by later calls: for a caller that recalibrates
    often (the scratch baseline, before every validation epoch; eagerly that cost
    MobileNetV2 0.27 s a call).
    """
    import tensorflow as tf

    layers = batchnorm_layers(model)
    saved = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(images), chunk)):
            for layer in layers:
                layer.momentum = k / (k + 1)
            batch = tf.convert_to_tensor(images[start : start + chunk], tf.float32)
            if passes is None:
                model(batch, training=True)
                continue
            if k not in passes:
                spec = tf.TensorSpec((None, *batch.shape[1:]), tf.float32)
                passes[k] = tf.function(
                    lambda x: model(x, training=True), input_signature=[spec]
                ).get_concrete_function()  # traced now, with this chunk's momentum
            passes[k](batch)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum


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
    from pipeline.train import loop

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
        out = backbone.predict(backbones.preprocess(preprocess, split.images), verbose=0)
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
        fixed = keras.models.clone_model(
            model, input_tensors=keras.Input((image_size, image_size, 3), name="image")
        )
        fixed.set_weights(model.get_weights())
        return fixed
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
        f"with (accepted: {sorted(backbones.PREPROCESSORS)}; default for a file: unit, "
        "[0, 1])."
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
    if spec.model_file is None:
        preprocess = spec.preprocess or backbones.architecture(arch).preprocess
        weights = None if spec.weights == "source" else "imagenet"
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


def save_backbone(backbone, meta: dict, out: Path) -> None:
    """backbone.keras plus meta.json, which records the file's content hash."""
    out.mkdir(parents=True, exist_ok=True)
    backbone.save(out / "backbone.keras")
    meta["sha256"] = datasets.file_digest(out / "backbone.keras")
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def main() -> None:
    name, params = backbone_stage_args(__doc__)
    devices.configure(params.seed, params.deterministic)
    manifest = datasets.read_manifest(MANIFEST)
    backbone, meta = make_backbone(
        name, params.backbones[name], manifest, params.pretrain, params.seed
    )
    save_backbone(backbone, meta, MODELS_DIR / name)
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
