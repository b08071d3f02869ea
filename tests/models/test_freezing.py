"""Cut points come from the graph; freeze plans are ordered and exact."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from pipeline.config import BackboneParams
from pipeline.models import backbones, freezing
from pipeline.models.strategies import Phase
from pipeline.train import phases


def residual_model():
    """stem -> [a -> b] + stem -> out: nothing inside the residual branch is a cut."""
    inputs = keras.Input((8, 8, 3), name="x")
    stem = layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    a = layers.Conv2D(4, 3, padding="same", name="a")(stem)
    b = layers.Conv2D(4, 3, padding="same", name="b")(a)
    added = layers.Add(name="add")([stem, b])
    out = layers.Conv2D(4, 1, name="out")(added)
    return keras.Model(inputs, out)


def test_cut_points_skip_layers_a_residual_edge_jumps_over():
    names = [c.layer for c in freezing.cut_points(residual_model())]
    assert names == ["stem", "add", "out"]


def test_cut_points_of_a_chain_are_every_layer():
    model = backbones.build("small_cnn", 16, None, BackboneParams(width=4))
    names = [c.layer for c in freezing.cut_points(model)]
    assert names == [layer.name for layer in model.layers[1:]]


def test_mobilenet_cut_points_lie_between_blocks():
    model = backbones.build("mobilenet_v2", 32, None, BackboneParams(alpha=0.35))
    names = {c.layer for c in freezing.cut_points(model)}
    assert "block_2_add" in names and "block_1_project_BN" in names
    # block_2's residual edge runs from block_1_project_BN to block_2_add.
    assert not names & {"block_2_expand", "block_2_depthwise", "block_2_project_BN"}


def test_cut_points_survive_saving_and_loading(tmp_path):
    model = residual_model()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert freezing.cut_points(loaded) == freezing.cut_points(model)


def test_frozen_fraction_counts_weights_up_to_the_cut():
    model = residual_model()
    points = {c.layer: c for c in freezing.cut_points(model)}
    stem = 3 * 3 * 3 * 4 + 4
    total = model.count_params()
    assert points["stem"].frozen_params == stem
    assert points["stem"].frozen_fraction == pytest.approx(stem / total)
    assert points["out"].frozen_fraction == 1.0


@pytest.mark.parametrize("arch, alpha", [("small_cnn", 1.0), ("mobilenet_v2", 0.35)])
def test_candidate_plans_run_from_nothing_to_everything_frozen(arch, alpha):
    model = backbones.build(arch, 32, None, BackboneParams(alpha=alpha, width=4))
    plans = freezing.candidate_plans(model, 0.0, 1.0, 5)
    assert len(plans) == 5
    assert [p.depth for p in plans] == list(range(5))
    assert plans[0].n_frozen_layers == 0 and plans[0].frozen_fraction == 0.0
    assert plans[-1].frozen_fraction == 1.0 and plans[-1].n_frozen_layers == len(model.layers)
    fractions = [p.frozen_fraction for p in plans]
    assert fractions == sorted(fractions) and len(set(fractions)) == 5
    cut_names = {c.layer for c in freezing.cut_points(model)}
    assert all(p.last_frozen_layer in cut_names for p in plans[1:])


def test_candidate_plans_respect_the_fraction_range():
    model = backbones.build("small_cnn", 16, None, BackboneParams(width=4))
    plans = freezing.candidate_plans(model, 0.2, 0.6, 10)
    assert plans and all(0.2 <= p.frozen_fraction <= 0.6 for p in plans)
    with pytest.raises(ValueError, match="no cut point"):
        freezing.candidate_plans(model, 0.999, 0.9995, 3)


def test_a_phase_freezes_exactly_the_prefix():
    model = backbones.build("small_cnn", 16, None, BackboneParams(width=4))
    plan = freezing.candidate_plans(model, 0.0, 1.0, 4)[2]
    suffix = tuple(layer.name for layer in model.layers[plan.n_frozen_layers :])
    phases.set_phase(model, Phase(1, suffix, 0.01))
    flags = [layer.trainable for layer in model.layers]
    assert flags == [False] * plan.n_frozen_layers + [True] * (len(flags) - plan.n_frozen_layers)
    assert "frozen up to" in plan.describe()
