"""The exported model: the backbone and head as trained, behind the resizing and
preprocessing the training data had, so it takes the stored images as they are."""

from __future__ import annotations

import numpy as np

from pipeline.data import datasets
from pipeline.train import context
from pipeline.winner import export
from tests.search.test_searched_inputs import reprepare, searched


def test_an_exported_model_at_a_smaller_size_resizes_as_the_training_data_was(workspace):
    params = searched()
    manifest = reprepare(params)
    ctx = context.load_context("small_cnn", params, manifest, ("train", "test"), size=12)
    head = ctx.pool.head(8, 0.0, seed=1)
    trained_path = ctx.pool.model(0, head)
    model = export.build(ctx.backbone, head, ctx.meta, manifest)
    stored = datasets.load_target_splits(manifest, ("test",))["test"].images  # uint8, 16 px
    served = model.predict(stored, verbose=0)
    expected = trained_path.predict(np.asarray(ctx.splits["test"][0]), verbose=0)
    np.testing.assert_allclose(served, expected, atol=1e-5)
