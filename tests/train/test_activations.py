"""The frozen-prefix activation cache: equivalent to training the full model, never stale."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.config import BackboneParams
from pipeline.data import image_store
from pipeline.models import backbones, freezing
from pipeline.models.strategies import Phase, StrategyPlan
from pipeline.train import activations, phases
from tests.train.test_phases import snapshot, tiny_data


def backbone_pair(arch: str):
    """Two backbones with identical weights: one trained on images, one on the cache."""
    first = backbones.build(arch, 32, None, BackboneParams(alpha=0.35, width=4))
    second = keras.models.clone_model(first)
    second.set_weights(first.get_weights())
    return first, second


def make_cache(backbone, train_x, val_x, cuts, folder, digest="backbone-sha", **budgets):
    budgets = {"memory_bytes": 1 << 30, "disk_bytes": 1 << 30, **budgets}
    inputs = {"train": train_x, "val": val_x}
    return activations.ActivationCache(backbone, digest, inputs, cuts, folder=folder, **budgets)


def depth_plan(backbone, depth: int, epochs: int = 3) -> tuple[StrategyPlan, int]:
    cut = freezing.candidate_plans(backbone, 0.0, 1.0, 4)[depth]
    trainable = tuple(layer.name for layer in backbone.layers[cut.n_frozen_layers :])
    phase = Phase(epochs, trainable, 0.01)
    plan = StrategyPlan("freeze_depth", (phase,), cut.describe(), cut.frozen_fraction, True)
    return plan, cut.n_frozen_layers


@pytest.mark.parametrize(
    ("arch", "depth"), [("small_cnn", 2), ("mobilenet_v2", 2), ("small_cnn", 3)]
)
def test_training_on_cached_activations_equals_training_the_frozen_full_model(
    arch, depth, tmp_path
):
    full_backbone, cached_backbone = backbone_pair(arch)
    plan, cut = depth_plan(full_backbone, depth)
    x, y = tiny_data(n=40)
    val = (x[:16], y[:16])
    full = phases.build_classifier(full_backbone, 8, 3, dropout=0.3, seed=5)
    cached = phases.build_classifier(cached_backbone, 8, 3, dropout=0.3, seed=5)
    cached.head.set_weights(full.head.get_weights())
    cache = make_cache(cached_backbone, x, val[0], [cut], tmp_path)
    kwargs = {"batch_size": 8, "seed": 3}
    a = phases.train_plan(full, full_backbone, plan, (x, y), val, **kwargs)
    b = phases.train_plan(cached, cached_backbone, plan, (x, y), val, cache=cache, **kwargs)
    assert (a.cached_phases, b.cached_phases) == (0, 1)  # the cache was really used
    assert cache.stats.computed == 2  # train and val, at one cut
    after_full, after_cached = snapshot(full), snapshot(cached)
    assert after_full.keys() == after_cached.keys()
    for path, value in after_full.items():
        np.testing.assert_allclose(after_cached[path], value, rtol=1e-4, atol=1e-5, err_msg=path)
    np.testing.assert_allclose(b.val_accuracy, a.val_accuracy, atol=1e-6)
    assert (b.trainable_params, b.total_params) == (a.trainable_params, a.total_params)


def test_a_phase_uses_the_deepest_cut_nothing_trained_so_far_precedes(tmp_path):
    backbone, _ = backbone_pair("small_cnn")
    plans = freezing.candidate_plans(backbone, 0.0, 1.0, 4)
    cuts = [p.n_frozen_layers for p in plans]  # 0, ..., len(layers)
    x, _ = tiny_data(n=4)
    cache = make_cache(backbone, x, x, cuts, tmp_path)
    names = [layer.name for layer in backbone.layers]
    assert cache.cut_for(set()) == len(names)  # head only: the whole backbone's output
    assert cache.cut_for(set(names[cuts[2] :])) == cuts[2]
    assert cache.cut_for(set(names[cuts[2] + 1 :])) == cuts[2]  # between cuts: the one below
    assert cache.cut_for({names[cuts[1]], names[-1]}) == cuts[1]  # any trained layer bounds it
    assert cache.cut_for(set(names)) == 0  # everything trains: no cache


def test_keys_change_with_the_backbone_file_and_the_data(tmp_path):
    backbone, _ = backbone_pair("small_cnn")
    x, _ = tiny_data(n=8)
    cut = len(backbone.layers)
    base = make_cache(backbone, x, x, [cut], tmp_path).key(cut, "train")
    assert make_cache(backbone, x, x, [cut], tmp_path).key(cut, "train") == base
    assert make_cache(backbone, x, x, [cut], tmp_path, "other-sha").key(cut, "train") != base
    changed = x.copy()
    changed[0, 0, 0, 0] += 1.0
    assert make_cache(backbone, changed, x, [cut], tmp_path).key(cut, "train") != base
    assert make_cache(backbone, x, x, [cut], tmp_path).key(cut, "val") != base


def test_too_big_for_memory_goes_to_disk_and_is_reused_by_the_next_run(tmp_path):
    backbone, _ = backbone_pair("small_cnn")
    x, _ = tiny_data(n=8)
    cut = len(backbone.layers)
    first = make_cache(backbone, x, x, [cut], tmp_path, memory_bytes=0)
    expected = keras.Model(backbone.input, backbone.output).predict(x, verbose=0)
    on_disk = first.activations(cut, "train")
    # only the split asked for is computed: val is not needed yet
    assert isinstance(on_disk, image_store.Rows) and len(list(tmp_path.glob("*.npy"))) == 1
    np.testing.assert_allclose(on_disk, expected, rtol=1e-5, atol=1e-6)
    second = make_cache(backbone, x, x, [cut], tmp_path, memory_bytes=0)
    np.testing.assert_array_equal(second.activations(cut, "train"), on_disk)
    assert (second.stats.computed, second.stats.disk_hits) == (0, 1)


def test_what_fits_in_memory_is_written_through_and_read_by_a_later_stage(tmp_path):
    """The sweep keeps its activations in memory and on disk; final (another process)
    reads them from disk into memory instead of computing them again."""
    backbone, _ = backbone_pair("small_cnn")
    x, _ = tiny_data(n=8)
    cut = len(backbone.layers)
    sweep = make_cache(backbone, x, x, [cut], tmp_path)
    in_memory = np.asarray(sweep.activations(cut, "train"))
    assert len(list(tmp_path.glob("*.npy"))) == 1 and sweep.stats.memory_bytes > 0
    final = make_cache(backbone, x, x, [cut], tmp_path)
    again = final.activations(cut, "train")
    assert isinstance(again, np.ndarray)  # served from memory after one read
    np.testing.assert_array_equal(np.asarray(again), in_memory)
    assert (final.stats.computed, final.stats.disk_hits) == (0, 1)
    final.activations(cut, "train")
    assert (final.stats.disk_hits, final.stats.memory_hits) == (1, 1)


def test_a_cut_too_big_for_both_budgets_falls_back_to_a_shallower_one_or_none(tmp_path):
    backbone, _ = backbone_pair("small_cnn")
    x, _ = tiny_data(n=8)
    cuts = [p.n_frozen_layers for p in freezing.candidate_plans(backbone, 0.0, 1.0, 4)]
    cache = make_cache(backbone, x, x, cuts, tmp_path, memory_bytes=0, disk_bytes=0)
    assert cache.cut_for(set()) == 0 and cache.stats.uncached == 1


def test_memory_budget_evicts_the_least_recently_used(tmp_path):
    backbone, _ = backbone_pair("small_cnn")
    x, _ = tiny_data(n=8)
    cuts = [p.n_frozen_layers for p in freezing.candidate_plans(backbone, 0.0, 1.0, 4)][-2:]
    probe = make_cache(backbone, x, x, cuts, tmp_path)
    budget = max(probe.nbytes(c, "train") for c in cuts)  # one array: a split at one cut
    cache = make_cache(backbone, x, x, cuts, tmp_path, memory_bytes=budget, disk_bytes=0)
    cache.activations(cuts[0], "train")  # one pass computes both cuts; cuts[0] is kept
    assert cache.stats.computed == 2 and cache.stats.memory_hits == 0
    cache.activations(cuts[1], "train")  # evicted by cuts[0]: computed again, evicting it
    assert 0 < cache.stats.memory_bytes <= budget
    cache.activations(cuts[0], "train")
    assert cache.stats.computed == 4 and not list(tmp_path.glob("*.npy"))


def test_one_forward_pass_fills_every_cut_of_a_split(tmp_path):
    """A deeper cut's prefix runs through the shallower ones: they come in the same pass,
    and each equals its own prefix model's output."""
    backbone, _ = backbone_pair("small_cnn")
    x, _ = tiny_data(n=8)
    cuts = [p.n_frozen_layers for p in freezing.candidate_plans(backbone, 0.0, 1.0, 4)]
    cuts = sorted({c for c in cuts if 0 < c})
    cache = make_cache(backbone, x, x, cuts, tmp_path)
    cache.activations(cuts[0], "train")
    assert cache.stats.computed == len(cuts) and len(cuts) > 1
    for cut in cuts:
        alone = keras.Model(backbone.input, backbone.layers[cut - 1].output).predict(x, verbose=0)
        np.testing.assert_allclose(cache.activations(cut, "train"), alone, rtol=1e-5, atol=1e-6)
    assert cache.stats.computed == len(cuts) and cache.stats.memory_hits == len(cuts)


def test_training_on_cached_augmented_views_equals_the_frozen_full_model_fed_the_same_views(
    tmp_path,
):
    """K views per image, computed once and cached through the frozen prefix, give the
    weights the full model gets when fed the same views epoch by epoch."""
    from pipeline.data import augment
    from pipeline.train.loop import Views

    full_backbone, cached_backbone = backbone_pair("small_cnn")
    plan, cut = depth_plan(full_backbone, 2, epochs=4)
    x, y = tiny_data(n=24)
    pixels = np.clip(x * 255.0, 0, 255)
    views = [v / 255.0 for v in augment.views(pixels, "strong", 2, seed=3)]
    names = ("train~strong~0", "train~strong~1")
    val = (x[:8], y[:8])
    full = phases.build_classifier(full_backbone, 8, 3, seed=5)
    cached = phases.build_classifier(cached_backbone, 8, 3, seed=5)
    cached.head.set_weights(full.head.get_weights())
    plain_backbone = keras.models.clone_model(full_backbone)
    plain_backbone.set_weights(full_backbone.get_weights())
    plain = phases.build_classifier(plain_backbone, 8, 3, seed=5)
    plain.head.set_weights(full.head.get_weights())
    cache = make_cache(cached_backbone, x, val[0], [cut], tmp_path)
    cache.add_inputs(dict(zip(names, views)))
    kwargs = {"batch_size": 8, "seed": 3}
    train = (Views(tuple(views), names), y)
    a = phases.train_plan(full, full_backbone, plan, train, val, **kwargs)
    b = phases.train_plan(cached, cached_backbone, plan, train, val, cache=cache, **kwargs)
    phases.train_plan(plain, plain_backbone, plan, (x, y), val, **kwargs)
    assert (a.cached_phases, b.cached_phases) == (0, 1)
    assert cache.stats.computed == 3  # each view once, and val; the plain train split never
    after_full, after_cached = snapshot(full), snapshot(cached)
    for path, value in after_full.items():
        np.testing.assert_allclose(after_cached[path], value, rtol=1e-4, atol=1e-5, err_msg=path)
    # the views were really trained on: the un-augmented images give other weights
    trained_on_views, trained_plain = full.head.get_weights(), plain.head.get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(trained_on_views, trained_plain))


def test_augmented_views_are_the_same_for_the_same_seed_and_change_the_image():
    from pipeline.data import augment

    pixels = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3)).astype(np.float32)
    first, again = augment.views(pixels, "light", 2, 7), augment.views(pixels, "light", 2, 7)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[0], pixels)
    assert augment.views(pixels, "none", 1, 7)[0] is not None
    np.testing.assert_array_equal(augment.views(pixels, "none", 1, 7)[0], pixels)
