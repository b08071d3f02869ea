"""Where a backbone can be split into a frozen prefix and a trainable suffix.

A *cut point* is a layer whose single output carries everything forward: no
edge of the functional graph jumps over it (a residual branch that starts
before it and joins after it would). Only there does "freeze everything up to
here" leave a well-defined prefix. Cut points come from the model's serialized
graph, so they work for any functional model, including one loaded from a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CutPoint:
    position: int  # index into backbone.layers
    layer: str
    frozen_params: int  # parameters (all weights) of layers[: position + 1]
    frozen_fraction: float  # of the backbone's parameters


@dataclass(frozen=True)
class FreezePlan:
    """Freeze backbone.layers[: n_frozen_layers]; the rest trains."""

    depth: int  # index into the candidate list: 0 = nothing frozen
    n_frozen_layers: int
    last_frozen_layer: str | None
    frozen_fraction: float

    def describe(self) -> str:
        if self.last_frozen_layer is None:
            return "nothing frozen (full fine-tune)"
        if self.frozen_fraction >= 1.0:
            return f"whole backbone frozen up to {self.last_frozen_layer} (head only)"
        return (
            f"frozen up to {self.last_frozen_layer} "
            f"({self.frozen_fraction:.0%} of backbone parameters)"
        )


def _layer_edges(model) -> tuple[list[str], list[tuple[int, int]]]:
    """Node names in topological order and (producer, consumer) index pairs.

    The nodes are the serialized graph's: layers, and the bare operations a constructor
    wrote as `x + y` or `x * 0.5` (MobileNetV3's hard sigmoid), which `model.layers` leaves
    out but whose edges still jump over layers.
    """
    config = model.get_config()
    if "layers" not in config or not all("inbound_nodes" in c for c in config["layers"]):
        # A Sequential model: a plain chain.
        names = [layer.name for layer in model.layers]
        return names, [(i, i + 1) for i in range(len(names) - 1)]
    names = [c["name"] for c in config["layers"]]
    index = {name: i for i, name in enumerate(names)}
    edges = []
    for consumer, layer_config in enumerate(config["layers"]):
        for producer in _history_names(layer_config["inbound_nodes"]):
            edges.append((index[producer], consumer))
    return names, edges


def _history_names(obj) -> list[str]:
    """Names of the layers whose tensors appear anywhere in a serialized call."""
    if isinstance(obj, dict):
        if "keras_history" in obj.get("config", {}):
            return [obj["config"]["keras_history"][0]]
        return [n for v in obj.values() for n in _history_names(v)]
    if isinstance(obj, (list, tuple)):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            return [obj[0]]  # legacy [name, node_index, tensor_index, kwargs]
        return [n for v in obj for n in _history_names(v)]
    return []


def param_count(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def layer_params(layer) -> int:
    return param_count(layer.weights)


def cut_points(model) -> list[CutPoint]:
    """Every layer after which a single tensor carries everything forward."""
    names, edges = _layer_edges(model)
    layer_names = [layer.name for layer in model.layers]
    at = {name: i for i, name in enumerate(names)}
    if any(name not in at for name in layer_names) or sorted(at[name] for name in layer_names) != [
        at[name] for name in layer_names
    ]:
        raise ValueError("model.layers and its config disagree; cannot find cut points")
    crossed = np.zeros(len(names), dtype=bool)  # crossed[i]: some edge jumps over node i
    for producer, consumer in edges:
        crossed[producer + 1 : consumer] = True
    sizes = np.array([layer_params(layer) for layer in model.layers])
    total = max(int(sizes.sum()), 1)
    cumulative = np.cumsum(sizes)
    first = 1 if model.layers and type(model.layers[0]).__name__ == "InputLayer" else 0
    return [
        CutPoint(i, layer_names[i], int(cumulative[i]), float(cumulative[i] / total))
        for i in range(first, len(layer_names))
        if not crossed[at[layer_names[i]]]
    ]


# Layers that complete the one before them: never cut between a layer with weights and
# one of these. After a layer without weights (a residual Add, a dense block's Concatenate,
# a pooling), the same layer opens the next block instead: ResNetV2's and DenseNet's
# pre-activation BatchNormalization. There the cut is a block boundary.
_COMPANIONS = {"BatchNormalization", "LayerNormalization", "Activation", "ReLU"}


def _completed_by_next(layers, position: int) -> bool:
    """Whether the layer after `position` completes it (a convolution's BN or activation)."""
    if position + 1 == len(layers) or not layers[position].weights:
        return False
    return type(layers[position + 1]).__name__ in _COMPANIONS


def candidate_plans(model, low: float, high: float, candidates: int) -> list[FreezePlan]:
    """A modest, ordered set of freeze depths from "nothing frozen" to "all frozen".

    A cut between a layer and its normalization or activation is skipped; among
    cut points that freeze the same weights only the last is kept (its name marks
    the end of a block); the rest are thinned to `candidates`, keeping the
    shallowest and deepest within [low, high].
    """
    points = [p for p in cut_points(model) if not _completed_by_next(model.layers, p.position)]
    distinct: list[CutPoint] = []
    for point in points:
        if distinct and distinct[-1].frozen_params == point.frozen_params:
            distinct[-1] = point
        else:
            distinct.append(point)
    options: list[tuple[int, str | None, float]] = [(0, None, 0.0)]
    options += [(p.position + 1, p.layer, p.frozen_fraction) for p in distinct]
    options = [o for o in options if low - 1e-9 <= o[2] <= high + 1e-9]
    if not options:
        raise ValueError(
            f"no cut point freezes between {low:.0%} and {high:.0%} of the backbone; "
            "widen search.freeze_depth"
        )
    if len(options) > candidates:
        options = [options[i] for i in _spread(np.array([o[2] for o in options]), candidates)]
    return [FreezePlan(d, n, name, frac) for d, (n, name, frac) in enumerate(options)]


def _spread(fractions: np.ndarray, k: int) -> list[int]:
    """k indices spread evenly over both depth (rank) and frozen fraction.

    Spacing by rank alone leaves a jump where one layer holds many parameters
    (MobileNetV2's last 1x1 conv); spacing by fraction alone drops the shallow
    cuts that matter for transferability curves. The average of the two does both.
    """
    n = len(fractions)
    span = max(fractions[-1] - fractions[0], 1e-12)
    position = (np.arange(n) / (n - 1) + (fractions - fractions[0]) / span) / 2
    chosen: list[int] = []
    for target in np.linspace(0.0, 1.0, k):
        order = np.argsort(np.abs(position - target))
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return sorted(chosen)
