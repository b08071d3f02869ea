"""A lean training loop: one traced step per trainable set, fused Adam, no per-fit setup.

Why not `model.fit`: on 2 CPU cores, tracing `fit`'s train and test functions for
MobileNetV2 took 10-11 s per compile, against 1.8 s for this loop's step and
0.5 s for its forward pass (profiled on this repo's backbones; Keras's
optimizer alone traced in 1.5 s more than TensorFlow's fused Adam kernel). A
trial trains for seconds, so that difference is most of its cost.

The Keras rules still hold: `compile` captures the trainable variables at the
moment it is called (set `trainable` first), and `fit` refuses to run if the
flags changed since. Frozen variables are never passed to the optimizer, so
they stay bit-identical.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.data.image_store import Streamed
from pipeline.train import devices

EVAL_BATCH = 512
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras's Adam defaults


def class_weights(choice: str, labels: np.ndarray, num_classes: int) -> np.ndarray | None:
    """Loss weight per class: None for `none`; for `balanced`, n / (k * n_c) over the k
    classes present, so that every class weighs the same in the loss however many
    images it has, and the mean weight per image is 1 (the learning rate means what it
    did). Scikit-learn's rule."""
    if choice == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = int(np.count_nonzero(counts))
    weights = np.where(counts > 0, len(labels) / (present * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


class DivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class PhaseRun:
    val_accuracy: list[float]  # per epoch run (empty without a validation split)
    epochs: int  # epochs run
    seconds: float  # device time, synchronised
    stopped: str | None  # None (all epochs), "plateau" (early stopping) or "pruned"
    best_val_correct: str = ""  # "1"/"0" per validation example at the first best epoch
    best_val_loss: float = math.nan  # mean cross-entropy on validation at that epoch


def _quiet_retracing_warning() -> None:
    """Each phase traces its own step on purpose; TensorFlow's "retracing" warning is noise."""
    import logging

    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _RetracingFilter) for f in logger.filters):
        logger.addFilter(_RetracingFilter())


class _RetracingFilter:
    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


class Step:
    """A traced train step over `variables` (default: the model's trainable ones).

    The learning rate, a rate multiplier per variable and Adam's moments are
    variables, so `reset` readies the same traced step for another phase or
    trial. A step may cover more variables than currently train (pool.py builds
    one per model over every variable that can train): `reset` gives those
    frozen now a rate of exactly 0, so they stay bit-identical.
    """

    def __init__(
        self,
        model,
        input_shape: tuple[int, ...],
        learning_rate: float,
        lr_scales: dict[int, float] | None = None,
        variables=None,
    ):
        import tensorflow as tf

        _quiet_retracing_warning()
        self.model = model
        self.variables = list(model.trainable_variables if variables is None else variables)
        self.ids = _ids(self.variables)
        self.active: frozenset[int] = frozenset()
        self._watched = [v.value for v in self.variables]  # the tf.Variables behind them
        self.learning_rate = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.scales = tf.Variable(tf.ones(len(self.variables)), trainable=False)
        self.iterations = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.classes = int(model.head.logits.units)
        self.class_weights = tf.Variable(tf.ones(self.classes), trainable=False)
        self.slots = [
            (tf.Variable(tf.zeros(v.shape, v.dtype)), tf.Variable(tf.zeros(v.shape, v.dtype)))
            for v in self.variables
        ]
        shape = (None, *input_shape)
        spec = [tf.TensorSpec(shape, tf.float32), tf.TensorSpec((None,), tf.int32)]
        self.train_step = tf.function(self._train, input_signature=spec)
        self.predict_step = predict_function(model, input_shape)
        self.reset(learning_rate, lr_scales)

    def reset(self, learning_rate: float, lr_scales: dict[int, float] | None = None) -> None:
        """A fresh Adam for the model's current trainable set: zero moments, this rate."""
        scales = lr_scales or {}
        self.active = frozenset(_ids(self.model.trainable_variables))
        if not self.active <= set(self.ids):
            raise RuntimeError("this step was traced for fewer variables than now train")
        self.learning_rate.assign(learning_rate)
        self.scales.assign(
            [float(scales.get(id(v), 1.0)) * (id(v) in self.active) for v in self.variables]
        )
        self.iterations.assign(0.0)
        for m, v in self.slots:
            m.assign(np.zeros(m.shape, np.float32))
            v.assign(np.zeros(v.shape, np.float32))

    def weigh_classes(self, weights: np.ndarray | None) -> None:
        """The loss weight of each class from now on (None: 1 each, the plain mean)."""
        self.class_weights.assign(np.ones(self.classes, np.float32) if weights is None else weights)

    def _train(self, x, y):
        import keras
        import tensorflow as tf

        # Watch exactly the captured variables: a layer unfrozen after a freeze keeps
        # TensorFlow's own `trainable` off, so automatic watching would skip it.
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(self._watched)
            probabilities = self.model(x, training=True)
            losses = keras.losses.sparse_categorical_crossentropy(y, probabilities)
            loss = tf.reduce_mean(losses * tf.gather(self.class_weights, y))  # x1.0: exact
            if self.model.losses:
                loss += tf.add_n(self.model.losses)
        gradients = tape.gradient(loss, self._watched)
        self.iterations.assign_add(1.0)
        b1 = tf.pow(BETA_1, self.iterations)
        b2 = tf.pow(BETA_2, self.iterations)
        for index, (variable, (m, v), gradient) in enumerate(
            zip(self.variables, self.slots, gradients)
        ):
            if gradient is None:
                continue
            tf.raw_ops.ResourceApplyAdam(
                var=variable.value.handle,
                m=m.handle,
                v=v.handle,
                beta1_power=b1,
                beta2_power=b2,
                lr=self.learning_rate * self.scales[index],
                beta1=BETA_1,
                beta2=BETA_2,
                epsilon=EPSILON,
                grad=gradient,
            )
        return loss


@dataclass(frozen=True)
class Views:
    """Training inputs that change with the epoch (augmented views of one split).

    Epoch e trains on `fixed[e % K]`, or on `online(e)` when given (fresh draws: what a
    phase that trains from the input uses). `names` are the fixed views' splits in the
    activation cache, so a cached phase can train on each view's prefix outputs.
    """

    fixed: tuple
    names: tuple[str, ...] = ()
    online: Callable[[int], object] | None = None

    def for_epoch(self, epoch: int):
        return (
            self.online(epoch) if self.online is not None else self.fixed[epoch % len(self.fixed)]
        )


def predict_function(model, input_shape: tuple[int, ...]):
    """The model's traced inference pass, one per model (it does not depend on flags)."""
    import tensorflow as tf

    if getattr(model, "_thaw_predict", None) is None:
        spec = [tf.TensorSpec((None, *input_shape), tf.float32)]
        model._thaw_predict = tf.function(lambda x: model(x, training=False), input_signature=spec)
    return model._thaw_predict


def outputs(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The model's inference outputs for `images`, batches side by side on the cores
    (`devices.side_by_side`) through one traced call.

    Not `model.predict()`: it feeds arrays through tf.data, whose parallel map TensorFlow's
    op determinism rewrites, logging an `E0000 … node_def_util … use_unbounded_threadpool`
    line on stderr in every stage that predicts.
    """
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    parts = devices.side_by_side(
        lambda i: call(tf.constant(images[i : i + batch])).numpy(), range(0, len(images), batch)
    )
    return np.concatenate(parts)


def _ids(variables) -> tuple[int, ...]:
    return tuple(id(v) for v in variables)


def check_current(step: Step) -> None:
    """Changing `trainable` after compile leaves a stale step: refuse to train."""
    if frozenset(_ids(step.model.trainable_variables)) != step.active:
        raise RuntimeError(
            "trainable flags changed since the model was compiled; call compile again "
            "(training.compile_classifier) after every change"
        )


def _as_tensor(array):
    """Data in host memory (a NumPy array) or on disk (image_store.Streamed) as it is, read
    a batch at a time (`_take`); anything else as a float32 tensor.

    Not one tensor copy per phase: beside the array, that doubled the memory a large
    split or cached activation needs. Callers that train on the same data again (the
    sweep's held splits) hold them as tensors already.
    """
    import tensorflow as tf

    if isinstance(array, (np.ndarray, Streamed)):
        return array
    return tf.convert_to_tensor(array, dtype=tf.float32)


def _take(images, index):
    """A batch (an index array or a slice) as a float32 tensor."""
    import tensorflow as tf

    if isinstance(images, (np.ndarray, Streamed)):  # in host memory or on disk: just this batch
        return tf.convert_to_tensor(np.asarray(images[index], np.float32))
    if isinstance(index, slice):
        return images[index]
    return tf.gather(images, index)


def probabilities(step: Step, images, n: int) -> np.ndarray:
    """Class probabilities of the first n examples, in inference mode."""
    out = [
        step.predict_step(_take(images, slice(i, i + EVAL_BATCH))).numpy()
        for i in range(0, n, EVAL_BATCH)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def predicted(step: Step, images, n: int) -> np.ndarray:
    """The predicted class of each of the first n examples, in inference mode."""
    return np.argmax(probabilities(step, images, n), axis=-1) if n else np.zeros(0, np.int64)


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels: unlike accuracy on 100 images,
    it tells apart two configurations that get the same images right."""
    picked = probs[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))) if len(labels) else math.nan


def accuracy(step: Step, images, labels: np.ndarray) -> float:
    return float(np.mean(predicted(step, images, len(labels)) == labels)) if len(labels) else 0.0


def balanced_accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """The mean over classes of each class's recall: accuracy that an imbalanced test
    split cannot inflate by favouring its largest class."""
    classes = np.unique(labels)
    return float(np.mean([np.mean(predictions[labels == c] == c) for c in classes]))


@dataclass(frozen=True)
class TestScores:
    accuracy: float
    balanced_accuracy: float
    correct: str  # "1" or "0" per test image, in order: paired tests compare runs image by image


def bits(hits: np.ndarray) -> str:
    """Per-example correctness as text, "1" or "0" each: a CSV cell pandas keeps as is."""
    return "".join("1" if hit else "0" for hit in hits)


def test_scores(step: Step, images, labels: np.ndarray) -> TestScores:
    found = predicted(step, images, len(labels))
    hits = found == labels
    return TestScores(float(np.mean(hits)), balanced_accuracy(found, labels), bits(hits))


def run_epochs(
    step: Step,
    train: tuple,
    val: tuple | None,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    first_epoch: int = 0,
    patience: int = 0,
    on_epoch: Callable[[int, float], bool] | None = None,
    before_eval: Callable[[], None] | None = None,
) -> PhaseRun:
    """Train `epochs` epochs in a seeded batch order; evaluate on `val` after each.

    `on_epoch(epoch, val_accuracy)` returning True stops the run (a pruner's
    verdict). `patience` > 0 stops after that many epochs without a new best.
    `before_eval()` runs before each evaluation (precise BatchNorm statistics).
    Without `val` (the final retraining) every epoch runs and nothing is evaluated.
    """
    import tensorflow as tf

    check_current(step)
    views = train[0] if isinstance(train[0], Views) else None
    train_x = None if views else _as_tensor(train[0])
    val_x = None if val is None else _as_tensor(val[0])
    train_y = train[1].astype(np.int32)
    order = np.random.default_rng(seed)
    history: list[float] = []
    stopped, run, best_bits, best_loss = None, 0, "", math.nan
    start = time.perf_counter()
    for epoch in range(first_epoch, first_epoch + epochs):
        run += 1
        losses = []
        permutation = order.permutation(len(train_y))
        epoch_x = train_x if views is None else _as_tensor(views.for_epoch(epoch))
        for begin in range(0, len(train_y), batch_size):
            index = permutation[begin : begin + batch_size]
            losses.append(step.train_step(_take(epoch_x, index), train_y[index]))
        loss = float(tf.reduce_mean(tf.stack(losses)))
        if not math.isfinite(loss):
            raise DivergedError(f"loss became {loss} in epoch {epoch + 1}")
        if val is None:
            continue
        if before_eval is not None:
            before_eval()
        probs = probabilities(step, val_x, len(val[1]))
        hits = np.argmax(probs, axis=-1) == val[1] if len(val[1]) else np.zeros(0, bool)
        if not history or float(np.mean(hits)) > max(history):
            best_bits, best_loss = bits(hits), cross_entropy(probs, val[1])
        history.append(float(np.mean(hits)) if len(hits) else 0.0)
        if on_epoch is not None and on_epoch(epoch, history[-1]):
            stopped = "pruned"
            break
        if patience and len(history) - 1 - int(np.argmax(history)) >= patience:
            stopped = "plateau"
            break
    devices.synchronize(step.model)
    return PhaseRun(history, run, time.perf_counter() - start, stopped, best_bits, best_loss)
