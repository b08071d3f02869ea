"""Data augmentation levels: Keras preprocessing layers on raw pixels (0-255), before
a backbone's own scaling, as the Keras transfer-learning guide puts them.

Only training images are augmented; validation and test images never are.
A frozen prefix sees `augment_views` fixed views per image, computed once (see
`train/context.py`); phases that train from the input draw fresh views each epoch.
"""

from __future__ import annotations

import numpy as np

# level -> (flip, rotation (turns), zoom, translation (fraction of side), contrast)
LEVELS: dict[str, tuple[bool, float, float, float, float] | None] = {
    "none": None,
    "light": (True, 0.03, 0.1, 0.05, 0.1),
    "strong": (True, 0.1, 0.2, 0.1, 0.3),
}
NONE = "none"


def layers(level: str, seed: int):
    """The level's layers as one Keras model (None for `none`), seeded: the same seed draws
    the same views call after call."""
    import keras

    spec = LEVELS[level]
    if spec is None:
        return None
    flip, rotation, zoom, shift, contrast = spec
    stack = [
        keras.layers.RandomFlip("horizontal", seed=seed) if flip else None,
        keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 3),
        keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 4),
    ]
    return keras.Sequential([layer for layer in stack if layer is not None], name=level)


class Augmenter:
    """Draws augmented copies of raw pixel images, batch by batch through one traced call."""

    BATCH = 256

    def __init__(self, level: str, seed: int):
        import tensorflow as tf

        self.model = layers(level, seed)
        self._call = tf.function(lambda x: self.model(x, training=True), reduce_retracing=True)

    def __call__(self, images) -> np.ndarray:
        import tensorflow as tf

        if self.model is None:
            return np.asarray(images, np.float32)
        parts = [
            self._call(tf.cast(images[i : i + self.BATCH], tf.float32)).numpy()
            for i in range(0, len(images), self.BATCH)
        ]
        return np.clip(np.concatenate(parts), 0.0, 255.0)


def views(images: np.ndarray, level: str, k: int, seed: int) -> list[np.ndarray]:
    """K augmented views of every image (view j of image i is the j-th draw)."""
    draw = Augmenter(level, seed)
    return [draw(images) for _ in range(k)]
