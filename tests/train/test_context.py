"""The per-backbone contexts: one read of the backbone file serves every input size."""

from __future__ import annotations

import json

import keras
import numpy as np

from pipeline import paths
from pipeline.preflight import load_params
from pipeline.train import context


def test_a_second_size_clones_the_backbone_as_loaded_not_as_a_run_left_it(workspace, monkeypatch):
    reads = []
    load = keras.models.load_model
    monkeypatch.setattr(
        keras.models, "load_model", lambda *a, **k: reads.append(a) or load(*a, **k)
    )
    manifest = json.loads(paths.MANIFEST.read_text())
    contexts = context.Contexts("small_cnn", load_params(), manifest, sizes=(8, 16))
    first = contexts[16]
    for variable in first.backbone.weights:  # what a fine-tuning run leaves behind
        variable.assign(np.zeros(variable.shape, variable.dtype))
    second = contexts[8]
    assert len(reads) == 1
    assert second.backbone.input_shape[1:3] == (8, 8)
    for got, want in zip(second.backbone.get_weights(), first.pristine, strict=True):
        np.testing.assert_array_equal(got, want)
    assert any(np.any(w != 0) for w in second.backbone.get_weights())
