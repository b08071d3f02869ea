"""Heads, classifiers and traced train steps kept across a sweep's trials.

On a CPU, tracing a train step is most of a short trial's cost, yet it
depends only on the model's structure: which cut the features start from and
the head's size. Everything else a trial changes (learning rate, which
variables train, per-layer rate multipliers, dropout rate, Adam's moments, the
head's initial weights) is a variable that `Head.reset` and `Step.reset` set,
so a trial whose structure an earlier trial had reuses its traced step. At most
`max_models` models (each with its traced steps) are kept, least recently used
dropped first, so memory stays bounded however long the sweep.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections import OrderedDict
from dataclasses import dataclass

from pipeline.train.loop import Step


@dataclass
class PoolStats:
    traced: int = 0  # steps built (each traces once)
    reused: int = 0  # phases served by an existing step
    evicted: int = 0  # models dropped to stay within max_models


class Pool:
    def __init__(self, backbone, num_classes: int, cache=None, max_models: int = 8):
        self.backbone, self.num_classes, self.cache = backbone, num_classes, cache
        self.max_models = max_models
        self._heads: dict[int, object] = {}
        self._models: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._steps: dict[int, Step] = {}  # id(model) -> its step
        self.stats = PoolStats()

    def head(self, units: int, dropout: float, seed: int):
        """The head of this size, re-initialised from `seed`, with this dropout rate."""
        from pipeline.models.classifier import Head

        if units not in self._heads:  # a hidden layer always has dropout: its rate is a variable
            dims = self.backbone.output_shape[1:]
            self._heads[units] = Head(units, self.num_classes, units > 0, dims)
        head = self._heads[units]
        head.reset(seed, dropout)
        return head

    def model(self, cut: int, head):
        """Features from `cut` (0: the whole backbone on images) into `head`."""
        from pipeline.models.classifier import Classifier

        key = (cut, id(head))
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        if cut == 0:
            features, dims = self.backbone, self.backbone.input_shape[1:]
        else:
            features, dims = self.cache.suffix(cut), self.cache.shape(cut)
        self._models[key] = Classifier(features, head, dims)
        while len(self._models) > self.max_models:
            _, evicted = self._models.popitem(last=False)
            self._steps.pop(id(evicted), None)
            self.stats.evicted += 1
            del evicted
            release_memory(clear_kernels=True)
        return self._models[key]

    def step(self, model, phase, lr_scales: dict[int, float]) -> Step:
        """The model's step, reset to a fresh Adam for `phase` (whose flags are set).

        One step per model, traced over every variable that can train in it;
        the phase's frozen ones get a rate of 0.
        """
        from pipeline.models.strategies import Phase
        from pipeline.train.phases import set_phase

        step = self._steps.get(id(model))
        if step is None:
            everything = tuple(layer.name for layer in self.backbone.layers)
            set_phase(self.backbone, Phase(0, everything, 0.0))
            variables = list(model.trainable_variables)
            set_phase(self.backbone, phase)
            step = Step(model, model.input_dims, phase.learning_rate, lr_scales, variables)
            self._steps[id(model)] = step
            self.stats.traced += 1
        else:
            step.reset(phase.learning_rate, lr_scales)
            self.stats.reused += 1
        return step


def release_memory(clear_kernels: bool = False) -> None:
    """Collect garbage (and dropped graphs' cached kernels), hand freed pages back to the OS.

    Kernels of a dropped graph stay in TensorFlow's kernel cache until it is
    cleared (measured: RSS grew 14 % over 100 MobileNetV2 trials without this).
    Without `malloc_trim`, glibc keeps freed pages, so resident memory only rises.
    """
    from tensorflow.python.eager import context

    gc.collect()
    if clear_kernels:
        context.context().clear_kernel_cache()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")  # may run ldconfig: look it up once
    return ctypes.CDLL(name) if name else None
