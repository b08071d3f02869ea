"""Keras correctness: frozen stays bit-identical, counts come from the weights."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import BackboneParams
from pipeline.models import backbones, freezing
from pipeline.models.strategies import Phase, StrategyPlan
from pipeline.train import phases


def tiny_data(n=24, size=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, size=n).astype("int32")
    return x, y


def snapshot(model) -> dict[str, np.ndarray]:
    return {w.path: np.array(w.numpy(), copy=True) for w in model.weights}


def single_phase(backbone, plan, lr: float, epochs: int = 2) -> StrategyPlan:
    trainable = tuple(layer.name for layer in backbone.layers[plan.n_frozen_layers :])
    phase = Phase(epochs, trainable, lr)
    return StrategyPlan("freeze_depth", (phase,), plan.describe(), plan.frozen_fraction, True)


def train_with_plan(arch: str, depth: int, lr: float = 0.05):
    backbone = backbones.build(arch, 32, None, BackboneParams(alpha=0.35, width=4))
    plan = freezing.candidate_plans(backbone, 0.0, 1.0, 4)[depth]
    model = phases.build_classifier(backbone, head_units=8, num_classes=3)
    before = snapshot(model)
    x, y = tiny_data()
    result = phases.train_plan(
        model,
        backbone,
        single_phase(backbone, plan, lr),
        (x, y),
        (x[:8], y[:8]),
        batch_size=8,
        seed=0,
    )
    return backbone, model, plan, before, result


@pytest.mark.parametrize("arch", ["small_cnn", "mobilenet_v2"])
def test_frozen_weights_and_batchnorm_statistics_are_bit_identical(arch):
    backbone, model, plan, before, _ = train_with_plan(arch, depth=2)
    frozen = backbone.layers[: plan.n_frozen_layers]
    frozen_weights = [w for layer in frozen for w in layer.weights]
    assert any("moving_variance" in w.path for w in frozen_weights)  # BN stats are checked
    for w in frozen_weights:
        np.testing.assert_array_equal(w.numpy(), before[w.path], err_msg=w.path)


@pytest.mark.parametrize("arch", ["small_cnn", "mobilenet_v2"])
def test_trainable_weights_trained_and_bn_stays_in_inference_mode(arch):
    backbone, model, plan, before, _ = train_with_plan(arch, depth=1)
    for w in model.trainable_weights:
        assert not np.array_equal(w.numpy(), before[w.path]), f"{w.path} did not train"
    # The backbone is called with training=False: even trainable BN layers in the
    # suffix normalise with, and never update, their moving statistics.
    stats = [w for w in backbone.non_trainable_weights if "moving" in w.path]
    assert stats
    for w in stats:
        np.testing.assert_array_equal(w.numpy(), before[w.path], err_msg=w.path)


def test_trainable_count_matches_the_weights_the_optimizer_updates():
    _, model, plan, _, result = train_with_plan("small_cnn", depth=2)
    sizes = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert result.trainable_params == sizes
    assert result.total_params == sum(int(np.prod(w.shape)) for w in model.weights)
    assert result.frozen_params == result.total_params - sizes
    step = phases.compile_classifier(model, 0.01)
    assert [id(v) for v in step.variables] == [id(w) for w in model.trainable_weights]


def test_freezing_changes_the_trainable_count():
    counts = [train_with_plan("small_cnn", depth=d)[4].trainable_params for d in (0, 2, 3)]
    assert counts[0] > counts[1] > counts[2] > 0


def test_head_only_trains_just_the_head():
    backbone, model, plan, before, result = train_with_plan("small_cnn", depth=3)
    assert plan.frozen_fraction == 1.0
    assert not backbone.trainable_weights
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in model.head.weights}
    assert len(model.head.weights) == 4  # hidden and logits: kernel and bias each


def test_result_records_device_time_and_per_epoch_accuracy():
    *_, result = train_with_plan("small_cnn", depth=2)
    assert len(result.val_accuracy) == 2
    assert result.device_kind in ("CPU", "GPU") and result.device
    assert result.device_seconds > 0


def test_nan_loss_stops_training_with_a_reason():
    backbone = backbones.build("small_cnn", 32, None, BackboneParams(width=4))
    plan = freezing.candidate_plans(backbone, 0.0, 1.0, 4)[0]
    model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    x, y = tiny_data()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(phases.DivergedError, match="loss became nan"):
        phases.train_plan(
            model,
            backbone,
            single_phase(backbone, plan, 0.01),
            (x, y),
            (x[:8], y[:8]),
            batch_size=8,
            seed=0,
        )


def plateau_run(patience: int, on_epoch=None):
    backbone = backbones.build("small_cnn", 32, None, BackboneParams(width=4))
    model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    backbone.trainable = False
    step = phases.compile_classifier(model, 0.0)  # rate 0: accuracy never improves
    x, y = tiny_data()
    return phases.fit(
        step, (x, y), (x, y), epochs=8, batch_size=8, seed=0, patience=patience, on_epoch=on_epoch
    )


def test_early_stopping_ends_training_after_patience_epochs_without_a_new_best():
    result = plateau_run(patience=2)
    assert result.stopped == "plateau" and len(result.val_accuracy) == 3
    assert plateau_run(patience=0).stopped is None


def test_a_pruner_verdict_stops_training_at_that_epoch():
    result = plateau_run(patience=0, on_epoch=lambda epoch, accuracy: epoch == 4)
    assert result.stopped == "pruned" and len(result.val_accuracy) == 5


def test_the_validation_loss_at_the_best_epoch_is_recorded_to_break_ties():
    backbone = backbones.build("small_cnn", 32, None, BackboneParams(width=4))
    model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    backbone.trainable = False
    step = phases.compile_classifier(model, 0.0)  # rate 0: the model stays as built
    x, y = tiny_data()
    result = phases.fit(step, (x, y), (x, y), epochs=2, batch_size=8, seed=0)
    probs = model.predict(x, verbose=0)
    expected = -np.mean(np.log(probs[np.arange(len(y)), y]))
    assert result.val_loss == pytest.approx(expected, rel=1e-5)
    assert result.val_correct == "".join("1" if h else "0" for h in probs.argmax(1) == y)


def test_balanced_class_weights_give_each_class_the_same_total_weight():
    from pipeline.train import loop

    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2], np.int32)
    weights = loop.class_weights("balanced", labels, 4)
    per_class = np.bincount(labels, weights=weights[labels], minlength=4)
    np.testing.assert_allclose(per_class[:3], len(labels) / 3)  # n / k each, k classes present
    assert weights[3] == 0.0 and np.mean(weights[labels]) == pytest.approx(1.0)  # mean 1
    assert loop.class_weights("none", labels, 4) is None


def test_the_weighted_loss_is_the_class_weighted_mean_and_none_is_the_plain_mean():
    from pipeline.train import loop

    backbone = backbones.build("small_cnn", 32, None, BackboneParams(width=4))
    model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    backbone.trainable = False
    step = phases.compile_classifier(model, 0.0)  # rate 0: the model stays as built
    x, y = tiny_data(classes=3)
    y[:18] = 0  # imbalanced: 18+ of 24 in class 0
    probs = model.predict(x, verbose=0)
    cross_entropy = -np.log(probs[np.arange(len(y)), y])
    weights = loop.class_weights("balanced", y, 3)
    step.weigh_classes(weights)
    weighted = float(step.train_step(x, y))
    assert weighted == pytest.approx(np.mean(weights[y] * cross_entropy), rel=1e-5)
    step.weigh_classes(None)
    assert float(step.train_step(x, y)) == pytest.approx(np.mean(cross_entropy), rel=1e-5)
    assert weighted != pytest.approx(np.mean(cross_entropy), rel=1e-3)
