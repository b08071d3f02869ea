"""Backbone registry: name -> builder of a headless Keras functional model.

Every builder returns a model from an (image_size, image_size, 3) input to a
feature map, with no classification head. `weights` is None (random init, to be
pretrained on the source task), "imagenet" (Keras's download) or the path of a
weights-only file for the architecture (the same weights, downloaded once).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ThawError
from pipeline.models import weights_file

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., object]  # (image_size, weights, spec) -> keras.Model
    min_image_size: int
    preprocess: str  # key into PREPROCESSORS
    imagenet: bool = True  # whether Keras publishes ImageNet weights for it
    stem: str = ""  # the first convolution's name: how a published weights file shows it
    stem_filters: Callable[[float], int] = lambda alpha: 32  # its filters at width `alpha`
    # Keras's ImageNet file without top at (alpha, image_size): the download `imagenet` makes
    imagenet_url: Callable[[float, int], str] | None = None


def _small_cnn(image_size: int, weights: str | None, spec) -> object:
    """Three conv blocks (conv-BN-ReLU x2, max-pool): tiny, fast, a plain chain."""
    import keras
    from keras import layers

    if weights is not None:
        raise ValueError("small_cnn has no published weights; use weights: source")
    width = spec.width
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for block, filters in enumerate((width, 2 * width, 4 * width), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"block{block}_conv{conv}"
            )(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras.Model(inputs, x, name="small_cnn")


def _application(constructor_name: str, **fixed) -> Callable[..., object]:
    def build(image_size: int, weights: str | None, spec) -> object:
        import keras

        constructor = getattr(keras.applications, constructor_name)
        kwargs = dict(fixed)
        if constructor_name in ("MobileNet", "MobileNetV2"):
            kwargs["alpha"] = spec.alpha
        return constructor(
            input_shape=(image_size, image_size, 3), include_top=False, weights=weights, **kwargs
        )

    return build


def _divisible_by_8(value: float) -> int:
    """MobileNetV2's channel rounding (keras.applications.mobilenet_v2._make_divisible)."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


def _mobilenet_url(alpha: float, _size: int) -> str:
    text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(alpha, f"{alpha}")
    return f"{KERAS_WEIGHTS}mobilenet/mobilenet_{text}_224_tf_no_top.h5"


def _mobilenet_v2_url(alpha: float, size: int) -> str:
    rows = size if size in (96, 128, 160, 192, 224) else 224
    return (
        f"{KERAS_WEIGHTS}mobilenet_v2/"
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
    )


ARCHITECTURES: dict[str, Architecture] = {
    "small_cnn": Architecture(_small_cnn, min_image_size=8, preprocess="unit", imagenet=False),
    "mobilenet": Architecture(
        _application("MobileNet"),
        32,
        "symmetric",
        stem="conv1",
        stem_filters=lambda alpha: int(32 * alpha),
        imagenet_url=_mobilenet_url,
    ),
    "mobilenet_v2": Architecture(
        _application("MobileNetV2"),
        32,
        "symmetric",
        stem="Conv1",
        stem_filters=lambda alpha: _divisible_by_8(32 * alpha),
        imagenet_url=_mobilenet_v2_url,
    ),
    "efficientnet_b0": Architecture(
        _application("EfficientNetB0"),
        32,
        "raw",
        stem="stem_conv",
        imagenet_url=lambda *_: (
            "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"
        ),
    ),
    "resnet50": Architecture(
        _application("ResNet50"),
        32,
        "caffe",
        stem="conv1_conv",
        stem_filters=lambda _: 64,
        imagenet_url=lambda *_: (
            f"{KERAS_WEIGHTS}resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
        ),
    ),
}


def _caffe(x: np.ndarray) -> np.ndarray:
    # keras.applications.resnet50.preprocess_input: RGB->BGR, minus ImageNet channel means.
    return x[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)


# Pixel scaling applied to float images in [0, 255] before the backbone.
PREPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": lambda x: x,  # EfficientNet rescales inside the model
    "unit": lambda x: x / 255.0,
    "symmetric": lambda x: x / 127.5 - 1.0,  # MobileNetV2's [-1, 1]
    "caffe": _caffe,
}


def architecture(arch: str) -> Architecture:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ThawError(f"Unknown backbone architecture {arch!r}; known: {sorted(ARCHITECTURES)}")


def min_image_size(arch: str) -> int:
    return architecture(arch).min_image_size


def build(arch: str, image_size: int, weights: str | None, spec) -> object:
    """A fresh headless backbone; `weights` None, "imagenet" or a weights-only file."""
    entry = architecture(arch)
    if weights is not None and not entry.imagenet:
        raise ThawError(f"{arch} has no ImageNet weights; use weights: source")
    try:
        if weights in (None, "imagenet"):
            return entry.build(image_size, weights, spec)
        with tempfile.TemporaryDirectory() as tmp:  # a compact file, expanded for Keras
            return entry.build(image_size, str(weights_file.expanded(weights, Path(tmp))), spec)
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        if weights == "imagenet" and _looks_like_download_failure(exc):
            raise ThawError(
                f"Could not download ImageNet weights for {arch} ({exc}). "
                + offline_advice(arch, spec.alpha, image_size)
            ) from exc
        if weights not in (None, "imagenet") and isinstance(exc, ValueError):
            raise ThawError(
                f"weights: {weights} does not fit {arch} (alpha {spec.alpha}) at {image_size} "
                f"px: {exc}"
            ) from exc
        raise


def offline_advice(arch: str, alpha: float, image_size: int) -> str:
    """How to use ImageNet weights on a machine without a network."""
    url = architecture(arch).imagenet_url
    where = f"download {url(alpha, image_size)}" if url else "download Keras's ImageNet file"
    return (
        f"Without a network, {where} (without top) where there is one, copy it here and set "
        "`weights:` to its path: a weights-only file for a built-in architecture is loaded "
        "as Keras would load its download."
    )


def _looks_like_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("url", "fetch", "download", "resolve", "network", "connection"))


def preprocess(name: str, images) -> np.ndarray:
    """A float32 copy of `images` (an array, or rows on disk: image_store.Rows), scaled."""
    return PREPROCESSORS[name](np.array(images, dtype=np.float32))


def at_size(model, image_size: int):
    """The same layers and weights on (image_size, image_size, 3) inputs: convolutions do
    not depend on the input size, so one backbone file serves every searched resolution."""
    import keras

    if tuple(model.input_shape[1:3]) == (image_size, image_size):
        return model
    resized = keras.models.clone_model(
        model, input_tensors=keras.Input((image_size, image_size, 3), name="image")
    )
    resized.set_weights(model.get_weights())
    return resized
