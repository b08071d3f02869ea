"""Which configuration to export, and its model rebuilt exactly as the final stage tested it.

The pick is `selection.recommendation` on the headline table the report builds from the
same results (the report states this pick, and checks the card names it). Its model is
the final stage's run of the pick's first retraining seed, made again: a trial's
configuration through `retrain.retrain` (the same replayed schedule on train+val, the
same seed), the converged probe through `probe.fitted` (deterministic), a baseline
through `baselines.retrain_and_test` at its recorded rate and epochs. Each is checked
against the final stage's per-image test results (the card's `reproduced`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import Params
from pipeline.evaluate import baselines, probe, retrain
from pipeline.evaluate.ranking import LINEAR_PIXELS, PROBE, SCRATCH
from pipeline.models import configuration
from pipeline.paths import SWEEP_DIR
from pipeline.report import results, selection, tables
from pipeline.screen import decision
from pipeline.train.context import Contexts, RunContext, manifest_sizes
from pipeline.winner import export


@dataclass(frozen=True)
class Pick:
    """The recommendation as the report states it, and the final stage's run exported."""

    row: pd.Series  # its headline row (tables.headline)
    table: pd.DataFrame  # the headline table it was chosen from
    run: pd.Series  # the final stage's run of its first seed: the one exported
    choice: selection.Choice
    results: results.Results

    @property
    def seed(self) -> int:
        return int(self.run.seed)


def pick(params: Params) -> Pick:
    found = results.read(list(params.backbones))
    table = tables.headline(found.runs)
    choice = selection.recommendation(table, found.images("val"), params.report.selection)
    row, runs = choice.pick, found.runs
    mine = runs[(runs.backbone == row.backbone) & (runs.kind == row.kind)
                & (runs["rank"].fillna(0).astype(int) == int(row["rank"]))]  # fmt: skip
    tested = mine.dropna(subset=["test_accuracy"]).sort_values("seed")
    return Pick(row, table, tested.iloc[0], choice, found)


@dataclass
class Rebuilt:
    """The pick's trained network: the served model, its TFLite core, and its test run."""

    full: object  # export.build: uint8 images of any size -> probabilities
    core: object  # export.core: pixels at the configuration's size -> probabilities
    meta: dict  # the backbone's meta.json (the pixels' own for the linear baseline)
    test_correct: str  # the rebuilt run's per-image test results (scored in the pipeline)


PIXELS_META = {"name": "linear_pixels", "arch": "none", "weights": "none", "sha256": "",
               "total_params": 0, "preprocess": "unit"}  # fmt: skip


def rebuild(chosen: Pick, params: Params, manifest: dict) -> Rebuilt:
    """The pick's run of its first seed, made again as its stage made it."""
    row = chosen.row
    if row.kind == LINEAR_PIXELS:
        return _pixels(chosen, params, manifest)
    ctx = _context(row, params, manifest)
    if row.kind == SCRATCH:
        return _scratch(chosen, ctx, params, manifest)
    if row.strategy == PROBE:
        fit, tested = probe.fitted(ctx)  # the backbone as loaded: nothing of it trains
        return _rebuilt(ctx.backbone, export.probe_layers(fit), ctx.meta, manifest,
                        tested["test_correct"])  # fmt: skip
    trials = pd.read_csv(SWEEP_DIR / row.backbone / "trials.csv", dtype=results.BITS)
    trial = retrain.trial_row(trials, params.report.top_k, int(row.trial))
    held: dict = {}

    def keep(trained_head) -> None:  # while the backbone holds the run's trained weights
        head = export.head_layers(trained_head)
        held["rebuilt"] = _rebuilt(ctx.backbone, head, ctx.meta, manifest, "")

    ran = retrain.retrain(ctx, trial, chosen.seed, keep)
    held["rebuilt"].test_correct = ran["test_correct"]
    return held["rebuilt"]


def _context(row, params: Params, manifest: dict) -> RunContext:
    sizes = decision.screened_sizes(row.backbone, manifest_sizes(manifest))
    contexts = Contexts(row.backbone, params, manifest, retrain.SPLITS, sizes)
    return contexts.at(int(row.image_size))


def _scratch(chosen: Pick, ctx: RunContext, params: Params, manifest: dict) -> Rebuilt:
    """The from-scratch baseline: the backbone's architecture with the head of its rank-1
    trial (as the final stage built it), retrained at the recorded rate and epochs."""
    trials = pd.read_csv(SWEEP_DIR / chosen.row.backbone / "trials.csv", dtype=results.BITS)
    config = configuration.from_row(retrain.trial_row(trials, params.report.top_k, None),
                                    ctx.size, ctx.search)  # fmt: skip
    scratch = baselines.scratch(ctx.backbone, config.head_units, config.dropout,
                                ctx.num_classes, params.pretrain.bn_momentum)  # fmt: skip
    protocol = baselines.Protocol.of(ctx.search, [chosen.seed])
    ran = baselines.retrain_and_test(scratch, ctx.splits, baselines.chosen_of(chosen.run),
                                     chosen.seed, protocol)  # fmt: skip
    model = scratch.step.model
    return _rebuilt(model.features, export.head_layers(model.head), ctx.meta, manifest,
                    ran.get("test_correct", ""))  # fmt: skip


def _pixels(chosen: Pick, params: Params, manifest: dict) -> Rebuilt:
    baseline, splits, protocol = baselines.pixels_setup(params, manifest)
    ran = baselines.retrain_and_test(baseline, splits, baselines.chosen_of(chosen.run),
                                     chosen.seed, protocol)  # fmt: skip
    head = export.head_layers(baseline.step.model.head)
    return _rebuilt(None, head, PIXELS_META, manifest, ran.get("test_correct", ""))


def _rebuilt(backbone, head: list, meta: dict, manifest: dict, bits: str) -> Rebuilt:
    full = export.build(backbone, head, meta, manifest)
    return Rebuilt(full, export.core(backbone, head, meta, manifest), meta, bits)


def differing(a: str, b: str) -> int:
    """Images on which two per-image result strings disagree (all, if their lengths do)."""
    if len(a) != len(b):
        return max(len(a), len(b))
    return int(np.sum(np.frombuffer(a.encode(), np.uint8) != np.frombuffer(b.encode(), np.uint8)))
