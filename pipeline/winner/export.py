"""The recommendation as self-contained Keras models (the files: winner/formats.py; the
card: winner/card.py).

`build` makes the served model: raw uint8 RGB images of any size -> class probabilities.
It is built from Keras's own layers only (Resizing, Rescaling, the backbone's
functional graph, pooling, Dense), so `keras.models.load_model` reads it in a process
that imports nothing from Thaw. Its resizing is datasets.resizer, the rule `prepare`
used; the pixel scaling is the backbone's preprocessing. `core` is the same network
from pixel values at the configuration's input size, what TFLite converts (its
antialiased resize and centre crop have no TFLite kernel).

The head is a list of Dense layers: a trained head's (`head_layers`), or the converged
linear probe's logistic regression with its standardisation folded into the weights
(`probe_layers`).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Dense:
    """One Dense layer of a head, as numbers: kernel (inputs x units), bias, activation."""

    kernel: np.ndarray
    bias: np.ndarray
    activation: str  # "relu" or "softmax"


def head_layers(head) -> list[Dense]:
    """A trained Head's layers (classifier.Head): dropout is a training-time layer, so
    nothing of it is served."""
    dense = [d for d in (head.hidden, head.logits) if d is not None]
    activations = ["relu", "softmax"][-len(dense) :]
    return [Dense(*(np.asarray(w) for w in d.get_weights()), a)
            for d, a in zip(dense, activations)]  # fmt: skip


def probe_layers(fit) -> list[Dense]:
    """The converged probe (scores.fit_probe: StandardScaler, then LogisticRegression) as
    one softmax layer on the raw pooled features: standardising is affine, so
    ((x - mean) / scale) W + b = x (W / scale) + (b - (mean / scale) W). A two-class
    regression holds one row, the log-odds of the second class, which is the softmax of
    (0, log-odds)."""
    scaler, regression = fit[0], fit[-1]
    coef, intercept = regression.coef_, regression.intercept_
    if coef.shape[0] == 1:  # binary: softmax over (0, z) is sigmoid(z)
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    kernel = (coef / scaler.scale_).T
    bias = intercept - (scaler.mean_ / scaler.scale_) @ coef.T
    return [Dense(kernel.astype(np.float32), bias.astype(np.float32), "softmax")]


def build(backbone, head: list[Dense], meta: dict, manifest: dict):
    """uint8 images (batch, H, W, 3) -> resize -> scale -> backbone -> head -> probabilities.
    `backbone` None: the head reads the flattened pixels (the linear baseline)."""
    import keras

    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Identity(dtype="float32", name="to_float")(inputs)
    x = datasets.resizer(manifest["image_size"], manifest.get("resize", "crop"))(x)
    size = side(backbone, manifest)
    if size != manifest["image_size"]:  # a searched smaller size: scaled as the data was
        x = _rounded(datasets.resizer(size, "crop", "resize_searched")(_rounded(x)))
    outputs = _network(backbone, head, meta, x)
    return keras.Model(inputs, outputs, name=f"thaw_{meta['name']}")


def side(backbone, manifest: dict) -> int:
    """The input side the network reads: the backbone's, or the stored images' (pixels)."""
    return manifest["image_size"] if backbone is None else backbone.input_shape[1]


def core(backbone, head: list[Dense], meta: dict, manifest: dict):
    """float32 pixel values 0..255 (batch, size, size, 3), already at the configuration's
    input size -> probabilities: `build` without its resizing."""
    import keras

    size = side(backbone, manifest)
    inputs = keras.Input((size, size, 3), dtype="float32", name="pixels")
    return keras.Model(inputs, _network(backbone, head, meta, inputs), name="thaw_core")


def _network(backbone, head: list[Dense], meta: dict, x):
    import keras

    scale = scaling_layer(meta["preprocess"])
    if scale is not None:
        x = scale(x)
    if backbone is None:
        x = keras.layers.Flatten(name="pixels_flat")(x)
    else:
        features = keras.models.clone_model(backbone)
        graph.copy_weights(backbone, features)  # a Normalization's statistics too
        x = features(x, training=False)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    for i, layer in enumerate(head):
        last = i == len(head) - 1
        dense = keras.layers.Dense(
            layer.kernel.shape[1], layer.activation, name="probabilities" if last else "head_hidden"
        )
        x = dense(x)
        dense.set_weights([layer.kernel, layer.bias])
    return x


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
