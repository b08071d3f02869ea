"""Every strategy, at every phase: frozen stays bit-identical, trainable trains, counts match."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.config import BackboneParams, SearchParams
from pipeline.errors import ThawError
from pipeline.models import backbones, strategies
from pipeline.models.configuration import StrategyChoice
from pipeline.train import phases
from tests.train.test_phases import snapshot, tiny_data

SEARCH = SearchParams(
    strategies=list(strategies.STRATEGIES),
    epochs=4,
    discriminative=[False, True],
    by_name=["block1_*", "re:^block2_conv1$"],
    freeze_depth={"low": 0.0, "high": 1.0, "candidates": 4},
)

# One choice per strategy: the values its search parameters would take.
CASES = {
    "head_only": {},
    "freeze_depth": {"freeze_depth": 1},
    "last_n_layers": {"last_n": 3},
    "by_name": {},
    "gradual": {"unfreeze_every": 1},
    "lp_ft": {"freeze_depth": 1, "ft_lr_fraction": 0.5},
    "bn_bias_only": {},
    "surgical": {"surgical_start": 1, "surgical_width": 1},
}


def make_backbone():
    return backbones.build("small_cnn", 32, None, BackboneParams(width=4))


def plan_for(
    name: str, backbone, discriminative: bool = False, search=SEARCH, lr: float = 0.01,
    fraction: float = 1.0,
):  # fmt: skip
    params = {"strategy": name, "discriminative": discriminative, "lr_decay": 2.6,
              "backbone_lr_fraction": fraction, **CASES[name]}  # fmt: skip
    info = strategies.backbone_info(backbone, search)
    return strategies.plan(StrategyChoice(**params), search, info, lr)


def run_checked(plan, backbone, pool=None):
    """Train the plan, checking the invariants at the end of every phase.

    A linear head: a hidden ReLU layer on a random backbone can die in the first
    phase, and then no gradient would reach the layers the later phases unfreeze.
    """
    if pool is None:
        model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    else:
        model = pool.model(0, pool.head(0, 0.0, seed=0))
    x, y = tiny_data()
    before = {"weights": snapshot(model)}
    seen = []

    def check_phase(index: int, step) -> None:
        phase = plan.phases[index]
        after = snapshot(model)
        trainable = {w.path for w in model.trainable_weights}
        for layer in backbone.layers:
            for w in layer.weights:
                if w.path not in trainable:  # frozen (incl. BN moving statistics): untouched
                    np.testing.assert_array_equal(
                        after[w.path], before["weights"][w.path], err_msg=f"phase {index}: {w.path}"
                    )
            if layer.name not in phase.trainable_layers:
                assert not layer.trainable_weights, f"phase {index}: {layer.name} not frozen"
        for w in model.trainable_weights:  # trainable: trained
            assert not np.array_equal(after[w.path], before["weights"][w.path]), w.path
        active = [v for v in step.variables if id(v) in step.active]
        optimizer_sizes = sum(int(np.prod(v.shape)) for v in active)
        seen.append(optimizer_sizes)
        assert optimizer_sizes == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        before["weights"] = after

    result = phases.train_plan(
        model,
        backbone,
        plan,
        (x, y),
        (x[:8], y[:8]),
        batch_size=8,
        seed=0,
        on_phase_end=check_phase,
        pool=pool,
    )
    assert len(seen) == len(plan.phases)
    assert result.trainable_params == seen[-1] and result.max_trainable_params == max(seen)
    assert len(result.val_accuracy) == sum(p.epochs for p in plan.phases)
    return model, result


@pytest.mark.parametrize("name", list(CASES))
def test_strategy_keeps_frozen_frozen_and_trains_the_rest(name):
    backbone = make_backbone()
    plan = plan_for(name, backbone)
    assert plan.strategy == name and plan.description
    run_checked(plan, backbone)


@pytest.mark.parametrize("name", list(CASES))
def test_a_pooled_step_shared_by_all_phases_keeps_frozen_frozen(name):
    """One traced step over every variable: the phase's frozen ones must not move."""
    from pipeline.train.pool import Pool

    backbone = make_backbone()
    plan = plan_for(name, backbone, discriminative=True)
    pool = Pool(backbone, num_classes=3)
    run_checked(plan, backbone, pool)
    run_checked(plan, backbone, pool)  # the second run reuses the traced step
    assert pool.stats.traced == 1 and pool.stats.reused == 2 * len(plan.phases) - 1


def test_discriminative_rates_with_every_fine_tuning_strategy():
    for name in ("freeze_depth", "last_n_layers", "gradual", "lp_ft", "bn_bias_only", "by_name"):
        backbone = make_backbone()
        plan = plan_for(name, backbone, discriminative=True)
        scales = dict(s for p in plan.phases for s in p.lr_scales)
        assert scales and max(scales.values()) == 1.0, name
        run_checked(plan, backbone)
        keras.backend.clear_session()


@pytest.mark.parametrize("name", ["freeze_depth", "last_n_layers", "gradual", "surgical"])
def test_a_fine_tuned_backbone_trains_at_its_fraction_of_the_heads_rate(name):
    backbone = make_backbone()
    plain = plan_for(name, backbone, discriminative=True)
    slow = plan_for(name, backbone, discriminative=True, fraction=0.1)
    assert [p.learning_rate for p in slow.phases] == [p.learning_rate for p in plain.phases]
    for fast_phase, slow_phase in zip(plain.phases, slow.phases):
        full = dict(fast_phase.lr_scales)
        scaled = dict(slow_phase.lr_scales)
        assert set(scaled) == set(slow_phase.trainable_layers)  # the head is not among them
        assert all(scaled[n] == pytest.approx(0.1 * full[n]) for n in full)
    assert "0.1x the head's rate" in slow.description
    assert "head's rate" not in plain.description


def test_trials_that_train_only_the_head_get_head_only_epochs():
    backbone = make_backbone()
    search = SEARCH.model_copy(update={"head_only_epochs": 9})
    info = strategies.backbone_info(backbone, search)
    assert plan_for("head_only", backbone, search=search).phases[0].epochs == 9
    everything = len(info.depths) - 1  # the deepest candidate freezes the whole backbone
    assert info.depths[everything].frozen_fraction == 1.0
    fixed = {"strategy": "freeze_depth", "freeze_depth": everything, "discriminative": False}
    whole = strategies.plan(StrategyChoice(**fixed), search, info, 0.01)
    assert not whole.fine_tunes and whole.phases[0].epochs == 9
    assert plan_for("freeze_depth", backbone, search=search).phases[0].epochs == SEARCH.epochs
    assert SEARCH.head_epochs == SEARCH.epochs  # unset: as epochs


def test_discriminative_rate_scales_each_layers_update():
    backbone = make_backbone()
    names = tuple(layer.name for layer in backbone.layers)
    phase = strategies.Phase(1, names, 0.05, lr_scales=(("block3_conv2", 0.0),))
    plan = strategies.StrategyPlan("freeze_depth", (phase,), "test", 0.0, True)
    model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    before = snapshot(model)
    x, y = tiny_data()
    phases.train_plan(model, backbone, plan, (x, y), (x[:8], y[:8]), batch_size=8, seed=0)
    kernel = backbone.get_layer("block3_conv2").kernel
    np.testing.assert_array_equal(kernel.numpy(), before[kernel.path])  # rate x 0
    other = backbone.get_layer("block3_conv1").kernel
    assert not np.array_equal(other.numpy(), before[other.path])


def test_segments_get_smaller_rates_going_down():
    backbone = make_backbone()
    info = strategies.backbone_info(backbone, SEARCH)
    top, bottom = info.segment_from_top("block3_conv2"), info.segment_from_top("block1_conv1")
    assert top == 0 and bottom > top


def test_gradual_unfreezes_one_more_segment_per_phase():
    plan = plan_for("gradual", make_backbone())
    sizes = [len(p.trainable_layers) for p in plan.phases]
    assert sizes[0] == 0 and sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sum(p.epochs for p in plan.phases) == SEARCH.epochs


def test_lp_ft_probes_then_fine_tunes_at_a_fraction_of_the_rate():
    plan = plan_for("lp_ft", make_backbone())
    probe, tune = plan.phases
    assert probe.trainable_layers == () and tune.trainable_layers
    assert tune.learning_rate == pytest.approx(probe.learning_rate * 0.5)


def test_bn_bias_only_trains_no_kernel():
    backbone = make_backbone()
    model, _ = run_checked(plan_for("bn_bias_only", backbone), backbone)
    head = {id(w) for w in model.head.weights}
    kinds = {w.path.rsplit("/", 1)[-1] for w in model.trainable_weights if id(w) not in head}
    assert kinds == {"gamma", "beta"}  # small_cnn's convs have no bias


def test_changing_trainable_without_recompiling_is_refused():
    backbone = make_backbone()
    model = phases.build_classifier(backbone, head_units=0, num_classes=3)
    step = phases.compile_classifier(model, 0.01)
    backbone.layers[1].trainable = False  # a change after compile
    x, y = tiny_data()
    with pytest.raises(RuntimeError, match="call compile again"):
        phases.fit(step, (x, y), (x, y), epochs=1, batch_size=8, seed=0)


def test_surgical_trains_one_window_of_segments_and_nothing_around_it():
    backbone = make_backbone()
    info = strategies.backbone_info(backbone, SEARCH)
    segments = info.segments
    assert segments[0][0] == 0 and segments[-1][1] == len(backbone.layers)
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))  # they tile the backbone
    plan = plan_for("surgical", backbone)
    (phase,) = plan.phases
    first, last = segments[1]
    assert phase.trainable_layers == info.layers[first:last]
    assert 0 < plan.frozen_fraction < 1 and "segments 2-2 of" in plan.description
    run_checked(plan, backbone)  # below and above the window bit-identical, the window trained


def test_a_low_surgical_window_keeps_the_full_rate_at_its_top():
    """Discriminative rates count segments down from the window's top, not the backbone's."""
    backbone = make_backbone()
    info = strategies.backbone_info(backbone, SEARCH)
    fixed = {"strategy": "surgical", "discriminative": True, "lr_decay": 2.0,
             "backbone_lr_fraction": 1.0, "surgical_start": 0, "surgical_width": 2}  # fmt: skip
    plan = strategies.plan(StrategyChoice(**fixed), SEARCH, info, 0.01)
    scales = dict(plan.phases[0].lr_scales)
    assert max(scales.values()) == 1.0 and min(scales.values()) == 0.5  # two segments
    assert info.segment_from_top(plan.phases[0].trainable_layers[-1]) > 0  # frozen ones above


def test_surgical_window_is_clipped_at_the_top_and_uses_the_cache_below_it():
    from pipeline.train.activations import ActivationCache

    backbone = make_backbone()
    info = strategies.backbone_info(backbone, SEARCH)
    n = len(info.segments)
    fixed = {"strategy": "surgical", "discriminative": False, "backbone_lr_fraction": 1.0,
             "surgical_start": n - 1, "surgical_width": n}  # fmt: skip
    plan = strategies.plan(StrategyChoice(**fixed), SEARCH, info, 0.01)
    top = info.segments[-1]
    assert plan.phases[0].trainable_layers == info.layers[top[0] :]
    x, _ = tiny_data()
    cache = ActivationCache(
        backbone, "digest", {"train": x}, [d.n_frozen_layers for d in info.depths],
        memory_bytes=1 << 30, disk_bytes=0, folder=None,
    )  # fmt: skip
    assert cache.cut_for(set(plan.phases[0].trainable_layers)) == top[0]


def test_unknown_layer_name_suggests_close_matches():
    backbone = make_backbone()
    search = SEARCH.model_copy(update={"by_name": ["block1_conv3"]})
    with pytest.raises(ThawError) as info:
        strategies.backbone_info(backbone, search)
    message = str(info.value)
    assert "'block1_conv3'" in message and "block1_conv1" in message


def test_a_saved_model_with_custom_names_is_frozen_by_name(tmp_path):
    """The article's third recipe: load a model file, freeze its layers by name."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="feature_extractor_a")(inputs)
    x = keras.layers.BatchNormalization(name="feature_norm")(x)
    x = keras.layers.Conv2D(4, 3, name="refiner")(x)
    keras.Model(inputs, x).save(tmp_path / "custom.h5")
    backbone = keras.models.load_model(tmp_path / "custom.h5", compile=False)
    search = SEARCH.model_copy(update={"by_name": ["feature_*"]})
    info = strategies.backbone_info(backbone, search)
    assert info.frozen_by_name == ("feature_extractor_a", "feature_norm")
    params = {"strategy": "by_name", "discriminative": False, "backbone_lr_fraction": 1.0}
    plan = strategies.plan(StrategyChoice(**params), search, info, 0.05)
    _, result = run_checked(plan, backbone)
    assert result.trainable_params == (3 * 3 * 4 * 4 + 4) + (4 * 3 + 3)  # refiner + linear head


def test_unknown_strategy_is_a_params_error():
    from pipeline.errors import ParamsError
    from pipeline.preflight import parse_params
    from tests.test_config import params_with

    with pytest.raises(ParamsError, match="search.strategies.*'lora'.*head_only"):
        parse_params(params_with(**{"search.strategies": ["head_only", "lora"]}))


@pytest.mark.parametrize("name", ["gradual", "lp_ft"])
def test_phases_unfreeze_a_backbone_loaded_from_a_file(name, tmp_path):
    make_backbone().save(tmp_path / "b.keras")
    backbone = keras.models.load_model(tmp_path / "b.keras", compile=False)
    plan = plan_for(name, backbone, lr=0.01)  # gentle: 0.05 can kill every ReLU by phase 3
    _, result = run_checked(plan, backbone)
    head = 64 * 3 + 3  # a linear head on small_cnn's 64 channels
    assert result.max_trainable_params > head  # later phases really train backbone layers
