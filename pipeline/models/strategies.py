"""Freezing strategies: named plans over a backbone, described as data.

A strategy is a pure function from a configuration's `StrategyChoice` and a backbone's
cut points to a `StrategyPlan`: one or more phases, each saying which backbone layers
train, at what learning rate, and whether only BatchNorm scale/offset and biases train.
`train.phases.train_plan` applies each phase before compiling. Which choices a strategy
has, and their ranges, is the search's business (search/space.py); this module knows
nothing of the tuner.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.errors import ThawError
from pipeline.models.configuration import StrategyChoice
from pipeline.models.freezing import FreezePlan, candidate_plans, layer_params


@dataclass(frozen=True)
class Phase:
    epochs: int
    trainable_layers: tuple[str, ...]  # backbone layers that train; the head always trains
    learning_rate: float
    bn_and_bias_only: bool = False  # within trainable layers, only BN gamma/beta and biases
    lr_scales: tuple[tuple[str, float], ...] = ()  # discriminative: layer -> rate multiplier


@dataclass(frozen=True)
class StrategyPlan:
    strategy: str
    phases: tuple[Phase, ...]
    description: str  # e.g. "frozen up to block_12_add (71 % of backbone parameters)"
    frozen_fraction: float  # share of backbone parameters frozen in the last phase
    fine_tunes: bool  # whether any backbone weight trains at all


@dataclass(frozen=True)
class BackboneInfo:
    """What strategies need to know about a backbone: trial-independent, built once."""

    layers: tuple[str, ...]  # backbone layers in topological order
    params: tuple[int, ...]  # parameter count per layer
    depths: tuple[FreezePlan, ...]  # candidate freeze depths (cut points)
    frozen_by_name: tuple[str, ...]  # layers matched by search.by_name

    @property
    def total(self) -> int:
        return max(sum(self.params), 1)

    def fraction_frozen(self, trainable: tuple[str, ...]) -> float:
        keep = set(trainable)
        return sum(p for n, p in zip(self.layers, self.params) if n not in keep) / self.total

    def suffix(self, n_frozen: int) -> tuple[str, ...]:
        return self.layers[n_frozen:]

    @functools.cached_property
    def segments(self) -> list[tuple[int, int]]:
        """[start, end) layer ranges between consecutive candidate cuts, bottom first."""
        n = len(self.layers)
        cuts = sorted({0} | {d.n_frozen_layers for d in self.depths if d.n_frozen_layers < n})
        return list(zip(cuts, cuts[1:] + [n]))

    def segment_from_top(self, layer: str) -> int:
        """0 for layers above the deepest internal cut, 1 below it, and so on."""
        position = self.layers.index(layer)
        cuts = [d.n_frozen_layers for d in self.depths if 0 < d.n_frozen_layers < len(self.layers)]
        return sum(cut > position for cut in cuts)


def backbone_info(backbone, search) -> BackboneInfo:
    fd = search.freeze_depth
    depths = candidate_plans(backbone, fd.low, fd.high, fd.candidates)
    names = tuple(layer.name for layer in backbone.layers)
    wanted = "by_name" in search.strategies and search.by_name
    by_name = resolve_layer_patterns(names, search.by_name) if wanted else ()
    return BackboneInfo(
        names, tuple(layer_params(x) for x in backbone.layers), tuple(depths), by_name
    )


def resolve_layer_patterns(layers: tuple[str, ...], patterns: list[str]) -> tuple[str, ...]:
    """Layers matched by exact names, globs (`block_1*`) or regexes (`re:^conv\\d`)."""
    matched: list[str] = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            hits = [n for n in layers if re.search(pattern[3:], n)]
        elif any(c in pattern for c in "*?["):
            hits = fnmatch.filter(layers, pattern)
        else:
            hits = [pattern] if pattern in layers else []
        if not hits:
            close = difflib.get_close_matches(pattern.removeprefix("re:"), layers, n=5, cutoff=0.5)
            hint = f"; closest layer names: {close}" if close else ""
            raise ThawError(
                f"by_name: {pattern!r} matches no layer of the backbone{hint}. Use exact "
                "names, glob patterns (block_1*) or regexes prefixed with 're:'."
            )
        matched += [n for n in hits if n not in matched]
    return tuple(n for n in layers if n in matched)


# --- strategies ---------------------------------------------------------------------------

Plan = Callable[[StrategyChoice, object, BackboneInfo, float], StrategyPlan]


def _discriminative(choice: StrategyChoice, info: BackboneInfo, trainable: tuple[str, ...]):
    """ULMFiT's discriminative rates: divide by `lr_decay` per segment going down.

    Counted from the top trainable segment, which keeps the full rate: a surgical
    window low in the network is not slowed by the frozen segments above it.
    """
    if not trainable or not choice.discriminative:
        return ()
    top = min(info.segment_from_top(n) for n in trainable)
    return tuple((n, choice.lr_decay ** -(info.segment_from_top(n) - top)) for n in trainable)


def _backbone_rates(choice: StrategyChoice, info: BackboneInfo, trainable: tuple[str, ...]):
    """Rate multipliers of the backbone layers that train, and how to say them.

    Pretrained weights want smaller steps than a new head: at one shared rate, the rates
    a linear head likes (Adam, 1e-2 and up) wreck ImageNet features (seen here: fine-tunes
    at chance from 0.026). So the backbone trains at a searched fraction of the head's
    rate, times the discriminative decay where that is on.
    """
    if not trainable:
        return (), ""
    fraction = choice.backbone_lr_fraction
    decays = dict(_discriminative(choice, info, trainable))
    scales = tuple((n, fraction * decays.get(n, 1.0)) for n in trainable)
    words = f", backbone at {fraction:.2g}x the head's rate" if fraction != 1.0 else ""
    if decays:
        words += f", discriminative rates (/{choice.lr_decay:.2f} per segment)"
    return scales, words


def _single_phase(
    choice, search, info, lr, trainable, description, bn_and_bias_only=False
) -> StrategyPlan:
    scales, words = _backbone_rates(choice, info, trainable)
    epochs = search.epochs if trainable else search.head_epochs  # a depth that freezes it all
    phase = Phase(epochs, trainable, lr, bn_and_bias_only, scales)
    fraction = 1.0 if bn_and_bias_only else info.fraction_frozen(trainable)
    return StrategyPlan(choice.strategy, (phase,), description + words, fraction, bool(trainable))


def head_only(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    return StrategyPlan(
        "head_only",
        (Phase(search.head_epochs, (), lr),),
        "whole backbone frozen (head only)",
        1.0,
        False,
    )


def freeze_depth(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    depth = info.depths[choice.freeze_depth]
    trainable = info.suffix(depth.n_frozen_layers)
    return _single_phase(choice, search, info, lr, trainable, depth.describe())


def _weighted_layers(info: BackboneInfo) -> list[str]:
    return [n for n, p in zip(info.layers, info.params) if p > 0]


def last_n_layers_range(search, info: BackboneInfo) -> tuple[int, int]:
    """The `last_n` choices this backbone allows: it may have fewer weighted layers."""
    high = min(search.last_n_layers.high, len(_weighted_layers(info)))
    return min(search.last_n_layers.low, high), high


def last_n_layers(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    weighted, n = _weighted_layers(info), choice.last_n
    first = info.layers.index(weighted[-n])
    return _single_phase(
        choice,
        search,
        info,
        lr,
        info.layers[first:],
        f"last {n} layers with weights trainable (from {weighted[-n]})",
    )


def _not_by_name(info: BackboneInfo) -> tuple[str, ...]:
    """The layers with weights that no pattern froze. A layer without weights (the input,
    a pooling or padding layer) trains nothing, and listing it as trained would keep the
    activation cache from serving any prefix that contains it."""
    frozen = set(info.frozen_by_name)
    return tuple(n for n, p in zip(info.layers, info.params) if p > 0 and n not in frozen)


def by_name(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    return _single_phase(
        choice,
        search,
        info,
        lr,
        _not_by_name(info),
        f"{len(info.frozen_by_name)} layers frozen by name ({', '.join(search.by_name)})",
    )


def bn_bias_only(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    # BN statistics policy: the backbone runs in inference mode, so moving mean
    # and variance stay as pretrained; only gamma/beta and biases learn.
    return _single_phase(
        choice,
        search,
        info,
        lr,
        info.layers,
        "only BatchNorm scale/offset and biases trainable (statistics frozen)",
        bn_and_bias_only=True,
    )


def _gradual_steps(choice, search, info: BackboneInfo) -> list[tuple[int, tuple[str, ...]]]:
    """(epochs, trainable layers) of each phase: head only, then one more segment from the
    top every `unfreeze_every` epochs, the last phase taking the epochs left."""
    cuts = sorted(
        {d.n_frozen_layers for d in info.depths if d.n_frozen_layers < len(info.layers)},
        reverse=True,
    )  # the top segment first
    sequence = [()] + [info.suffix(cut) for cut in cuts]  # head only, then one more segment
    steps, epochs_left, every = [], search.epochs, choice.unfreeze_every
    for step, trainable in enumerate(sequence):
        if epochs_left <= 0:
            break
        epochs = epochs_left if step == len(sequence) - 1 else min(every, epochs_left)
        steps.append((epochs, trainable))
        epochs_left -= epochs
    return steps


def gradual(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    """ULMFiT: head first, then one more segment from the top every E epochs."""
    phases, words = [], ""
    for epochs, trainable in _gradual_steps(choice, search, info):
        scales, said = _backbone_rates(choice, info, trainable)
        words = words or said
        phases.append(Phase(epochs, trainable, lr, lr_scales=scales))
    frozen = info.fraction_frozen(phases[-1].trainable_layers)
    return StrategyPlan(
        "gradual",
        tuple(phases),
        f"gradual unfreezing: one segment every {choice.unfreeze_every} epochs, "
        f"{len(phases)} phases, ending {frozen:.0%} frozen{words}",
        frozen,
        any(p.trainable_layers for p in phases),
    )


def lp_ft_depths(info: BackboneInfo) -> list[FreezePlan]:
    """The depths LP-FT fine-tunes from: those that leave something to fine-tune."""
    return [d for d in info.depths if d.frozen_fraction < 1.0] or list(info.depths)


def lp_ft(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    """Kumar et al. 2022: linear probe to convergence, then fine-tune at a smaller rate."""
    depth = lp_ft_depths(info)[choice.freeze_depth]
    fraction = choice.ft_lr_fraction
    probe_epochs = max(1, search.epochs // 2)
    trainable = info.suffix(depth.n_frozen_layers)
    scales = _discriminative(choice, info, trainable)
    phases = (
        Phase(probe_epochs, (), lr),
        Phase(search.epochs - probe_epochs, trainable, lr * fraction, lr_scales=scales),
    )
    phases = tuple(p for p in phases if p.epochs > 0)
    return StrategyPlan(
        "lp_ft",
        phases,
        f"linear probe {probe_epochs} epochs, then {depth.describe()} at {fraction:.2g}x the rate",
        depth.frozen_fraction,
        bool(trainable),
    )


def _surgical_window(choice, info: BackboneInfo) -> tuple[int, int, int, int]:
    """(first segment, end segment, first layer, end layer) of the window; the start and
    width are searched over fixed ranges, so a window is clipped at the top."""
    segments = info.segments
    start = choice.surgical_start
    end = min(start + choice.surgical_width, len(segments))
    return start, end, segments[start][0], segments[end - 1][1]


def surgical(choice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    """Lee et al. 2023: fine-tune one contiguous window of segments, freeze the rest.

    Which block to tune depends on the shift (input-level shifts favour early
    blocks, output-level ones late blocks), so the window's start and width are
    searched. The prefix below the window is served by the activation cache; the
    frozen layers above it still run, in inference mode, passing gradients down.
    """
    start, end, first, last = _surgical_window(choice, info)
    trainable = info.layers[first:last]
    frozen = info.fraction_frozen(trainable)
    return _single_phase(
        choice,
        search,
        info,
        lr,
        trainable,
        f"window of segments {start + 1}-{end} of {len(info.segments)} trainable "
        f"({info.layers[first]} to {info.layers[last - 1]}), {frozen:.0%} frozen",
    )


STRATEGIES: dict[str, Plan] = {
    "head_only": head_only,
    "freeze_depth": freeze_depth,
    "last_n_layers": last_n_layers,
    "by_name": by_name,
    "gradual": gradual,
    "lp_ft": lp_ft,
    "bn_bias_only": bn_bias_only,
    "surgical": surgical,
}


def plan(choice: StrategyChoice, search, info: BackboneInfo, lr: float) -> StrategyPlan:
    """The plan of a strategy's choices over this backbone, at head learning rate `lr`."""
    return STRATEGIES[choice.strategy](choice, search, info, lr)


def tuned_layers(choice: StrategyChoice, search, info: BackboneInfo) -> tuple[str, ...]:
    """The backbone layers a strategy's plan trains, from its structural choices alone (its
    rate choices exist only where there are some): the plan at neutral rates, which choose
    nothing about which layers train."""
    neutral = dataclasses.replace(choice, backbone_lr_fraction=1.0, discriminative=False)
    phases = plan(neutral, search, info, 1.0).phases
    return tuple(dict.fromkeys(n for phase in phases for n in phase.trainable_layers))
