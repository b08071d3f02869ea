"""Assemble backbone + head, freeze, compile, train, and measure what it cost.

The Keras transfer-learning rules this module keeps:
- the backbone is always called with `training=False` (see `_inference_mode`),
  so every BatchNormalization in it, frozen or not, normalizes with its moving
  statistics and never updates them; a trainable BN layer in the suffix learns
  only its scale and offset (the Keras fine-tuning guide's policy);
- `trainable` flags are set before `compile` (the train step captures them);
- parameter counts come from the model's own weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pipeline import devices
from pipeline.freezing import FreezePlan, apply_plan, param_count


@dataclass
class TrainResult:
    val_accuracy: list[float]  # per epoch
    trainable_params: int
    frozen_params: int
    total_params: int
    device: str
    device_kind: str  # "GPU" or "CPU"
    device_seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def best_val_accuracy(self) -> float:
        return max(self.val_accuracy)


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def build_classifier(backbone, plan: FreezePlan, head_units: int, num_classes: int):
    """Input -> backbone(training=False) -> pooled features -> [Dense relu] -> softmax.

    The freeze plan is applied here, before the model is compiled.
    """
    import keras
    from keras import layers

    apply_plan(backbone, plan)
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = _inference_mode(backbone)(inputs)
    if len(x.shape) == 4:
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif len(x.shape) != 2:
        raise ValueError(f"backbone output has shape {x.shape}; expected a feature map or vector")
    if head_units > 0:
        x = layers.Dense(head_units, activation="relu", name="head_hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="head_logits")(x)
    return keras.Model(inputs, outputs, name="classifier")


def _inference_mode(backbone):
    """A layer that always calls `backbone` with training=False.

    In Keras 3 a functional model overrides the `training=False` stored on a
    nested model's node with its own call's value (fit passes training=True), so
    `backbone(x, training=False)` alone does not keep a trainable BatchNorm in
    inference mode. This wrapper has no `training` argument for Keras to inject.
    """
    import keras

    class InferenceMode(keras.layers.Layer):
        def __init__(self, inner, **kwargs):
            super().__init__(name=inner.name, **kwargs)
            self.inner = inner

        def call(self, x):
            return self.inner(x, training=False)

        def compute_output_shape(self, input_shape):
            return self.inner.compute_output_shape(input_shape)

    return InferenceMode(backbone)


def compile_classifier(model, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def _epoch_reporter(on_epoch: Callable[[int, float], None] | None):
    """A callback that forwards each epoch's val accuracy and stops on a NaN loss."""
    import keras

    class EpochReporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            loss = logs.get("loss", 0.0)
            if not math.isfinite(loss):
                raise DivergedError(f"loss became {loss} in epoch {epoch + 1}")
            if on_epoch is not None:
                on_epoch(epoch, float(logs["val_accuracy"]))

    return EpochReporter()


def fit(
    model,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a compiled model; time it on the device, synchronised at the end."""
    import keras

    keras.utils.set_random_seed(seed)
    device = devices.current()
    start = time.perf_counter()
    history = model.fit(
        train[0],
        train[1],
        validation_data=val,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[_epoch_reporter(on_epoch)],
    )
    devices.synchronize(model)
    seconds = time.perf_counter() - start
    trainable = param_count(model.trainable_weights)
    total = param_count(model.weights)
    return TrainResult(
        val_accuracy=[float(a) for a in history.history["val_accuracy"]],
        trainable_params=trainable,
        frozen_params=total - trainable,
        total_params=total,
        device=device.name,
        device_kind=device.kind,
        device_seconds=seconds,
    )
