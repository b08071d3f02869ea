"""Heads, classifiers and traced train steps kept across a sweep's trials.

On a CPU, tracing a train step is most of a short trial's cost, yet it
depends only on the model's structure and its trainable set: which cut the
features start from, the head's size and whether it has dropout, and which
variables train. Everything else a trial changes (learning rate, per-layer
rate multipliers, dropout rate, Adam's moments, the head's initial weights) is
a variable that `Head.reset` and `Step.reset` set, so a trial whose structure
an earlier trial had reuses its traced step. At most `max_steps` steps are
kept, least recently used dropped first, so memory stays bounded.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from pipeline.loop import Step


@dataclass
class PoolStats:
    traced: int = 0  # steps built (each traces once)
    reused: int = 0  # phases served by an existing step
    evicted: int = 0


class Pool:
    def __init__(self, backbone, num_classes: int, cache=None, max_steps: int = 32):
        self.backbone, self.num_classes, self.cache = backbone, num_classes, cache
        self.max_steps = max_steps
        self._heads: dict[int, object] = {}
        self._models: dict[tuple[int, int], object] = {}
        self._steps: OrderedDict[int, Step] = OrderedDict()
        self.stats = PoolStats()

    def head(self, units: int, dropout: float, seed: int):
        """The head of this size, re-initialised from `seed`, with this dropout rate."""
        import numpy as np

        from pipeline.classifier import Head

        key = units  # a hidden layer always has a dropout op: its rate is a variable
        if key not in self._heads:
            head = Head(units, self.num_classes, dropout=units > 0)
            head(np.zeros((1, *self.backbone.output_shape[1:]), np.float32))  # build
            self._heads[key] = head
        head = self._heads[key]
        head.reset(seed, dropout)
        return head

    def model(self, cut: int, head):
        """Features from `cut` (0: the whole backbone on images) into `head`."""
        from pipeline.classifier import Classifier

        key = (cut, id(head))
        if key not in self._models:
            if cut == 0:
                features, dims = self.backbone, self.backbone.input_shape[1:]
            else:
                features, dims = self.cache.suffix(cut), self.cache.shape(cut)
            self._models[key] = Classifier(features, head, dims)
        return self._models[key]

    def step(self, model, phase, lr_scales: dict[int, float]) -> Step:
        """The model's step, reset to a fresh Adam for `phase` (whose flags are set).

        One step per model, traced over every variable that can train in it;
        the phase's frozen ones get a rate of 0.
        """
        from pipeline.strategies import Phase
        from pipeline.training import set_phase

        key = id(model)
        step = self._steps.get(key)
        if step is None:
            everything = tuple(layer.name for layer in self.backbone.layers)
            set_phase(self.backbone, Phase(0, everything, 0.0))
            variables = list(model.trainable_variables)
            set_phase(self.backbone, phase)
            step = Step(model, model.input_dims, phase.learning_rate, lr_scales, variables)
            self.stats.traced += 1
            self._steps[key] = step
            while len(self._steps) > self.max_steps:
                self._steps.popitem(last=False)
                self.stats.evicted += 1
        else:
            step.reset(phase.learning_rate, lr_scales)
            self._steps.move_to_end(key)
            self.stats.reused += 1
        return step
