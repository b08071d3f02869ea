"""The model a trial trains: features (a backbone, or its suffix after a cut) -> head.

Subclassed rather than functional on purpose. In Keras 3 a functional model
passes its own call's `training` value (fit's True) down to a nested model,
overriding a stored `training=False`; an explicit argument in `call` is kept.
Nothing here calls the backbone to build, so wrapping one backbone in many
heads adds no graph nodes to its layers and costs no forward pass.

A head is reusable across trials: `reset` draws fresh initial weights from a
seed and sets the dropout rate, which is a variable, so a train step traced for
one trial serves the next one with the same structure (see pool.py).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers


class Head(keras.layers.Layer):
    """[global average pool] -> [Dense relu, dropout] -> softmax."""

    def __init__(
        self, units: int, num_classes: int, dropout: bool, feature_dims: tuple[int, ...], **kwargs
    ):
        super().__init__(name="head", **kwargs)
        self.pool = layers.GlobalAveragePooling2D(name="pool")
        self.hidden = layers.Dense(units, "relu", name="head_hidden") if units else None
        self.logits = layers.Dense(num_classes, "softmax", name="head_logits")
        self.has_dropout = bool(units and dropout)
        if self.has_dropout:
            import tensorflow as tf

            # A plain tf.Variable: Keras does not count it among the model's weights.
            self.rate = tf.Variable(0.0, trainable=False, name="dropout_rate")
            self.noise = keras.random.SeedGenerator(0, name="dropout_seed")
        self(np.zeros((1, *feature_dims), np.float32))  # build now: `reset` needs the weights

    def reset(self, seed: int, dropout: float = 0.0) -> None:
        """Fresh Glorot-uniform kernels and zero biases drawn from `seed`, and the rate."""
        for offset, dense in enumerate(d for d in (self.hidden, self.logits) if d is not None):
            init = keras.initializers.GlorotUniform(seed=seed * 7919 + offset)
            dense.kernel.assign(init(dense.kernel.shape))
            dense.bias.assign(np.zeros(dense.bias.shape, np.float32))
        if self.has_dropout:
            self.rate.assign(dropout)
            self.noise.state.assign(np.array([seed, 0], self.noise.state.dtype))

    def call(self, x, training=False):
        if len(x.shape) == 4:
            x = self.pool(x)
        elif len(x.shape) != 2:
            raise ValueError(f"features have shape {x.shape}; expected a map or a vector")
        if self.hidden is not None:
            x = self.hidden(x)
        if self.has_dropout and training:
            keep = keras.random.uniform(keras.ops.shape(x), seed=self.noise) >= self.rate
            x = keras.ops.where(keep, x / (1.0 - self.rate), 0.0)
        return self.logits(x)


class Classifier(keras.Model):
    """`features` (in inference mode) -> `head`.

    `features` None means the inputs already are the backbone's output (head only).
    `features_train_mode` is only for a network trained from scratch (a baseline):
    its BatchNorm then normalises with batch statistics while it trains, as usual.
    A transferred backbone never runs in training mode.
    """

    def __init__(
        self, features, head: Head, input_dims: tuple[int, ...], features_train_mode=False
    ):
        super().__init__(name="classifier")
        self.features, self.head, self.input_dims = features, head, tuple(input_dims)
        self.features_train_mode = features_train_mode
        self.built = True  # both parts are built already

    def call(self, x, training=False):
        if self.features is not None:
            x = self.features(x, training=bool(training and self.features_train_mode))
        return self.head(x, training=training)
