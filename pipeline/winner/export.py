"""The selected configuration as one self-contained model (its card: winner/card.py; the
SavedModel written beside the stage: winner/saved_model_job.py).

    models/best/<name>/model.keras      raw uint8 RGB images of any size -> class probabilities
    models/best/<name>/saved_model/     the same as a TensorFlow SavedModel (TF Serving, TFLite)
    models/best/<name>/card.json, card.md

The model is built from Keras's own layers only (Resizing, Rescaling, the
backbone's functional graph, pooling, Dense), so `keras.models.load_model` reads
it in a process that imports nothing from Thaw. Its resizing is datasets.resizer,
the rule `prepare` used; the pixel scaling is the backbone's preprocessing.
The card's test accuracy is measured on this file's model, on the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data import datasets
from pipeline.models import backbones, graph
from pipeline.train import loop

_CAFFE_MEANS = (103.939, 116.779, 123.68)  # BGR, as backbones._caffe
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # as backbones._torch


def scaling_layer(name: str):
    """backbones.PREPROCESSORS[name] as a built-in Keras layer (None: nothing to do)."""
    import keras

    if name == "raw":
        return None
    if name == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="scale")
    if name == "symmetric":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")
    if name == "caffe":  # RGB -> BGR and minus the channel means: a fixed 1x1 convolution
        swap = np.zeros((1, 1, 3, 3), np.float32)
        for out_channel in range(3):
            swap[0, 0, 2 - out_channel, out_channel] = 1.0
        layer = keras.layers.Conv2D(3, 1, trainable=False, name="scale")
        layer.build((None, None, None, 3))
        layer.set_weights([swap, -np.array(_CAFFE_MEANS, np.float32)])
        return layer
    if name == "torch":  # DenseNet's: ImageNet's mean and std on [0, 255], as ConvNeXt's stem
        mean, std = np.array(_TORCH_MEAN) * 255.0, np.array(_TORCH_STD) * 255.0
        return keras.layers.Normalization(mean=mean, variance=std**2, name="scale")
    raise ValueError(
        f"no exported form of preprocess {name!r}; known: {list(backbones.PREPROCESSORS)}"
    )


def build(backbone, head, meta: dict, manifest: dict):
    """uint8 images (batch, H, W, 3) -> resize -> scale -> backbone -> head -> probabilities."""
    import keras

    features = keras.models.clone_model(backbone)
    graph.copy_weights(backbone, features)  # a Normalization's statistics too (EfficientNet)
    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Identity(dtype="float32", name="to_float")(inputs)
    x = datasets.resizer(manifest["image_size"], manifest.get("resize", "crop"))(x)
    size = backbone.input_shape[1]
    if size != manifest["image_size"]:  # a searched smaller size: scaled as the data was
        x = _rounded(datasets.resizer(size, "crop", "resize_searched")(_rounded(x)))
    scale = scaling_layer(meta["preprocess"])
    if scale is not None:
        x = scale(x)
    x = features(x, training=False)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if head.hidden is not None:  # dropout is a training-time layer: nothing at inference
        hidden = keras.layers.Dense(head.hidden.units, "relu", name="head_hidden")
        x = hidden(x)
        hidden.set_weights(head.hidden.get_weights())
    logits = keras.layers.Dense(head.logits.units, "softmax", name="probabilities")
    outputs = logits(x)
    logits.set_weights(head.logits.get_weights())
    return keras.Model(inputs, outputs, name=f"thaw_{meta['name']}")


def _rounded(x):
    """To whole pixel values as `prepare` stores them (uint8), so training and serving agree."""
    import keras

    return keras.ops.clip(keras.ops.round(x), 0.0, 255.0)


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> dict:
    probabilities = loop.outputs(model, images)
    found = np.argmax(probabilities, axis=-1)
    return {
        "accuracy": float(np.mean(found == labels)),
        "balanced_accuracy": loop.balanced_accuracy(found, labels),
        "examples": int(len(labels)),
    }


def save_keras(model, out: Path) -> None:
    """model.keras alone: `Background` adds saved_model/ and the test from this file."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")


def saved_copy_and_test(out: Path, test) -> dict:
    """Load out/model.keras as a user would, write it as saved_model/, and test it."""
    import keras

    model = keras.models.load_model(out / "model.keras")
    model.export(str(out / "saved_model"), format="tf_saved_model", verbose=False)
    return evaluate(model, test.images, test.labels)
