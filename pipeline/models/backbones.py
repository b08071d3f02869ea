"""Backbone registry: name -> builder of a headless Keras functional model.

Every builder returns a model from an (image_size, image_size, 3) input to a
feature map, with no classification head. `weights` is None (random init, to be
pretrained on the source task) or "imagenet" (Keras's download).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ThawError


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., object]  # (image_size, weights, spec) -> keras.Model
    min_image_size: int
    preprocess: str  # key into PREPROCESSORS
    imagenet: bool = True  # whether Keras publishes ImageNet weights for it


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
        if constructor_name == "MobileNetV2":
            kwargs["alpha"] = spec.alpha
        return constructor(
            input_shape=(image_size, image_size, 3), include_top=False, weights=weights, **kwargs
        )

    return build


ARCHITECTURES: dict[str, Architecture] = {
    "small_cnn": Architecture(_small_cnn, min_image_size=8, preprocess="unit", imagenet=False),
    "mobilenet_v2": Architecture(_application("MobileNetV2"), 32, "symmetric"),
    "efficientnet_b0": Architecture(_application("EfficientNetB0"), 32, "raw"),
    "resnet50": Architecture(_application("ResNet50"), 32, "caffe"),
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
    """A fresh headless backbone; `weights` None or "imagenet"."""
    entry = architecture(arch)
    if weights == "imagenet" and not entry.imagenet:
        raise ThawError(f"{arch} has no ImageNet weights; use weights: source")
    try:
        return entry.build(image_size, weights, spec)
    except Exception as exc:  # Keras raises a bare Exception on a failed download
        if weights == "imagenet" and _looks_like_download_failure(exc):
            raise ThawError(
                f"Could not download ImageNet weights for {arch} ({exc}). This machine seems "
                "to have no network: set `weights: source` to pretrain on the source classes "
                "offline, or put a .keras/.h5 file path in `weights`."
            ) from exc
        raise


def _looks_like_download_failure(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("url", "fetch", "download", "resolve", "network", "connection"))


def preprocess(name: str, images: np.ndarray) -> np.ndarray:
    return PREPROCESSORS[name](images.astype(np.float32))
