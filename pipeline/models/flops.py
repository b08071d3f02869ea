"""Analytical training FLOPs: a cost that does not depend on the machine.

Per example, the forward pass runs through every layer. The backward pass runs
only through the part that trains: every layer above the first trainable one
computes the gradient with respect to its input, and every trainable layer
also the gradient with respect to its weights, each costing about as much as
the layer's forward pass (the usual "backward = 2 x forward" rule, applied
layer by layer). A multiply-add counts as 2 FLOPs. Elementwise layers count
one FLOP per output element; reshaping, padding and input layers count none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FREE = {"InputLayer", "ZeroPadding2D", "Reshape", "Flatten", "Dropout", "Cropping2D"}
TWO_PER_ELEMENT = {"BatchNormalization", "LayerNormalization"}  # scale and shift


@dataclass(frozen=True)
class LayerCost:
    name: str
    forward: int  # FLOPs per example
    has_weights: bool


def _dims(shape) -> tuple[int, ...]:
    """A Keras shape without its batch axis."""
    return tuple(int(d) for d in shape[1:])


def layer_forward_flops(layer, input_dims: Sequence[tuple[int, ...]], output_dims) -> int:
    kind = type(layer).__name__
    out = math.prod(output_dims)
    if kind in FREE:
        return 0
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        c_in = input_dims[0][-1] // layer.groups
        return 2 * out * kh * kw * c_in + (out if layer.use_bias else 0)
    if kind == "DepthwiseConv2D":
        kh, kw = layer.kernel_size
        return 2 * out * kh * kw + (out if layer.use_bias else 0)
    if kind == "Dense":
        return 2 * out * input_dims[0][-1] + (out if layer.use_bias else 0)
    if kind in TWO_PER_ELEMENT:
        return 2 * out
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        return out * math.prod(layer.pool_size)
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return math.prod(input_dims[0])
    if kind in ("Add", "Multiply", "Subtract", "Average", "Maximum"):
        return out * (len(input_dims) - 1)
    return out  # activations and other elementwise layers


def _inputs(layer) -> list:
    tensors = layer.input
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def model_costs(model) -> list[LayerCost]:
    """Forward FLOPs per example of each layer of a functional model, in order."""
    costs = []
    for layer in model.layers:
        is_input = type(layer).__name__ == "InputLayer"
        input_dims = [] if is_input else [_dims(t.shape) for t in _inputs(layer)]
        output = _dims(layer.output.shape)
        flops = layer_forward_flops(layer, input_dims, output)
        costs.append(LayerCost(layer.name, flops, bool(layer.weights)))
    return costs


def training_flops(costs: Sequence[LayerCost], trainable: Iterable[str]) -> int:
    """FLOPs of one training step per example: forward, plus backward where it is needed."""
    trainable = set(trainable)
    forward = sum(c.forward for c in costs)
    positions = [i for i, c in enumerate(costs) if c.name in trainable and c.has_weights]
    if not positions:
        return forward
    first = positions[0]
    input_grads = sum(c.forward for c in costs[first + 1 :])
    weight_grads = sum(costs[i].forward for i in positions)
    return forward + input_grads + weight_grads


def head_costs(feature_dims: tuple[int, ...], units: int, num_classes: int) -> list[LayerCost]:
    """The classifier head's layers (classifier.Head): [pool] -> [hidden Dense] -> softmax."""
    costs, width = [], feature_dims[-1]
    if len(feature_dims) == 3:
        costs.append(LayerCost("head_pool", math.prod(feature_dims), False))
    if units:
        costs.append(LayerCost("head_hidden", 2 * width * units + units, True))
        width = units
    costs.append(LayerCost("head_logits", 2 * width * num_classes + num_classes, True))
    return costs


def trial_flops(
    costs: Sequence[LayerCost],
    phases: Sequence[tuple[int, Iterable[str]]],
    n_train: int,
    n_val: int,
) -> int:
    """A trial's FLOPs: per phase (epochs run, trainable layers), training steps over the
    train split plus a forward pass over the validation split after each epoch.
    `costs` covers backbone and head; head layers always train."""
    head = [c.name for c in costs if c.name.startswith("head_")]
    forward = sum(c.forward for c in costs)
    return sum(
        epochs * (n_train * training_flops(costs, [*layers, *head]) + n_val * forward)
        for epochs, layers in phases
    )
