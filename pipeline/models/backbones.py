"""Backbone registry: name -> builder of a headless Keras functional model.

Every builder returns a model from an (image_size, image_size, 3) input to a
feature map, with no classification head. `weights` is None (random init, to be
pretrained on the source task), "imagenet" (Keras's download) or the path of a
weights-only file for the architecture (the same weights, downloaded once).
Thaw's own `small_cnn`, and every keras.applications ImageNet family from the one
table in models/zoo.py, built by Keras's constructor and flattened so that every
block boundary is a layer (models/graph.py).
"""

from __future__ import annotations

import difflib
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import ThawError
from pipeline.models import graph, weights_file, zoo


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., object]  # (image_size, weights, spec) -> keras.Model
    min_image_size: int
    preprocess: str  # key into PREPROCESSORS
    imagenet: bool = True  # whether Keras publishes ImageNet weights for it
    stem: str = ""  # the first convolution's name: how a published weights file shows it
    # its filters at width `alpha`, where the width changes them (MobileNet and V2)
    stem_filters: Callable[[float], int] | None = None
    # Keras's ImageNet file without top at (alpha, image_size): the download `imagenet` makes
    imagenet_url: Callable[[float, int], str] | None = None
    member: zoo.Member | None = None  # its row of the zoo; None for Thaw's own


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


def _application(member: zoo.Member) -> Callable[..., object]:
    def build(image_size: int, weights: str | None, spec) -> object:
        import keras

        constructor = getattr(keras.applications, member.constructor)
        kwargs = {"alpha": spec.alpha} if member.has_width else {}
        # A Keras 3 file of the flat graph (the layout Thaw's own backbone saves) loads
        # after flattening; Keras's download and its own layouts load as Keras loads them.
        later = weights not in (None, "imagenet") and weights_file.flat_layout(weights)
        with graph.fresh_names():
            model = constructor(
                input_shape=(image_size, image_size, 3),
                include_top=False,
                weights=None if later else weights,
                **kwargs,
            )
            model = graph.flat(model)
            if later:
                model.load_weights(weights)
            if weights not in (None, "imagenet") and member.module == "efficientnet":
                model = _efficientnet_as_downloaded(model)
        return model

    return build


def _efficientnet_as_downloaded(model):
    """EfficientNet as Keras builds it for its ImageNet download, when a weights file holds
    that download's input statistics. The published files store the standard deviations
    as the Normalization's variance, so Keras's `weights="imagenet"` adds a Rescaling by
    1/sqrt(std) after it (tensorflow/tensorflow#49930); built from the file's path, Keras
    leaves it out, and the ImageNet features would see wrongly scaled inputs."""
    import keras
    from keras.src.applications.efficientnet import IMAGENET_STDDEV_RGB

    (normalization,) = [x for x in model.layers if isinstance(x, keras.layers.Normalization)]
    if not np.allclose(normalization.adapt_variance.numpy(), IMAGENET_STDDEV_RGB):
        return model  # random or its own statistics: as built
    scale = [1.0 / np.sqrt(stddev) for stddev in IMAGENET_STDDEV_RGB]
    name = "rescaling_1"  # Keras's name for it in a fresh session
    return graph.insert_after(model, normalization.name, keras.layers.Rescaling(scale, name=name))


def _divisible_by_8(value: float) -> int:
    """MobileNetV2's channel rounding (keras.applications.mobilenet_v2._make_divisible)."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


# The stem's filters at width alpha, where alpha changes them: how a weights file tells its
# width when its tensors' count (zoo fingerprints) is one Thaw does not know.
_STEM_FILTERS: dict[str, Callable[[float], int]] = {
    "mobilenet": lambda alpha: int(32 * alpha),
    "mobilenet_v2": lambda alpha: _divisible_by_8(32 * alpha),
}


def _from_zoo(arch: str, member: zoo.Member) -> Architecture:
    return Architecture(
        _application(member),
        member.min_size,
        member.preprocess,
        stem=member.stem,
        stem_filters=_STEM_FILTERS.get(arch),
        imagenet_url=functools.partial(zoo.imagenet_url, member),
        member=member,
    )


ARCHITECTURES: dict[str, Architecture] = {
    "small_cnn": Architecture(_small_cnn, min_image_size=8, preprocess="unit", imagenet=False),
    **{arch: _from_zoo(arch, member) for arch, member in zoo.ZOO.items()},
}


def _caffe(x: np.ndarray) -> np.ndarray:
    # keras.applications.resnet50.preprocess_input: RGB->BGR, minus ImageNet channel means.
    return x[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)


def _torch(x: np.ndarray) -> np.ndarray:
    # keras.applications.densenet.preprocess_input: [0, 1], then ImageNet's channel mean
    # and standard deviation, in the order Keras applies them.
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return (x / 255.0 - mean) / std


# Pixel scaling applied to float images in [0, 255] before the backbone: each equals its
# families' keras.applications.<module>.preprocess_input (zoo.Member.preprocess).
PREPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "raw": lambda x: x,  # EfficientNet, V2, ConvNeXt, MobileNetV3 rescale inside the model
    "unit": lambda x: x / 255.0,
    "symmetric": lambda x: x / 127.5 - 1.0,  # Keras's "tf" mode: MobileNet, Inception, ...
    "caffe": _caffe,  # ResNet (v1), VGG
    "torch": _torch,  # DenseNet
}


def architecture(arch: str) -> Architecture:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ThawError(unknown_architecture(arch)) from None


def unknown_architecture(arch: str) -> str:
    """Says the name is unknown, with the known names closest to it, then all of them."""
    close = difflib.get_close_matches(arch, list(ARCHITECTURES), n=3, cutoff=0.6)
    hint = f" (closest: {', '.join(close)})" if close else ""
    return f"Unknown backbone architecture {arch!r}{hint}; known: {sorted(ARCHITECTURES)}"


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
    """How to use ImageNet weights on a machine without a network: the exact file."""
    member = architecture(arch).member
    if member is None:
        return "Without a network, use weights: source, or a .keras/.h5 model file."
    url, cached = (
        zoo.imagenet_url(member, alpha, image_size),
        zoo.cache_name(member, alpha, image_size),
    )
    return (
        f"Without a network, download {url} (without top) where there is one, copy it here "
        "and set `weights:` to its path: a weights-only file for a built-in architecture is "
        f"loaded as Keras would load its download (or put it in Keras's cache as {cached})."
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
    graph.copy_weights(model, resized)  # and a Normalization's statistics (EfficientNet)
    return resized
