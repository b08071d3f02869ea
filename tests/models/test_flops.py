"""Analytical FLOPs against a hand calculation on a tiny model."""

from __future__ import annotations

import keras

from pipeline.config import BackboneParams
from pipeline.models import backbones, flops


def tiny_model():
    inputs = keras.Input((4, 4, 1), name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="dense")(x)
    return keras.Model(inputs, outputs)


def test_forward_flops_match_a_hand_calculation():
    costs = {c.name: c.forward for c in flops.model_costs(tiny_model())}
    # conv: 2 x (4 x 4 outputs x 2 filters) x (3 x 3 x 1 inputs) = 576; relu and pool:
    # one per element of the 4 x 4 x 2 map = 32 each; dense: 2 x 2 x 3 + 3 biases = 15.
    assert costs == {"image": 0, "conv": 576, "relu": 32, "pool": 32, "dense": 15}


def test_backward_runs_only_through_the_trainable_part():
    costs = flops.model_costs(tiny_model())
    forward = 576 + 32 + 32 + 15
    assert flops.training_flops(costs, []) == forward
    # Only the dense layer trains: its weight gradient (15); no input gradient below it.
    assert flops.training_flops(costs, ["dense"]) == forward + 15
    # Everything trains: input gradients above conv (32 + 32 + 15), weight gradients
    # of the layers with weights (576 + 15).
    assert flops.training_flops(costs, ["conv", "relu", "pool", "dense"]) == forward + 79 + 591


def test_every_layer_of_the_registered_backbones_is_counted():
    spec = BackboneParams(alpha=0.35, width=4)
    for arch in ("small_cnn", "mobilenet_v2"):
        model = backbones.build(arch, 32, None, spec)
        costs = flops.model_costs(model)
        assert [c.name for c in costs] == [layer.name for layer in model.layers]
        convs = [c for c, layer in zip(costs, model.layers) if "Conv" in type(layer).__name__]
        assert convs and all(c.forward > 0 for c in convs)


def test_a_trials_flops_add_up_over_phases_and_splits():
    costs = flops.model_costs(tiny_model())[:-1]  # the backbone: image, conv, relu, pool
    costs += flops.head_costs((2,), units=0, num_classes=3)  # head_logits: 2 x 2 x 3 + 3
    forward = 576 + 32 + 32 + 15
    head_only = forward + 15
    everything = forward + 79 + 591
    total = flops.trial_flops(costs, [(2, []), (3, ["conv"])], n_train=10, n_val=4)
    assert total == 2 * (10 * head_only + 4 * forward) + 3 * (10 * everything + 4 * forward)
