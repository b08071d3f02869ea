"""Provenance: where each backbone's weights came from."""

from __future__ import annotations

import pytest

from pipeline.report.provenance import weights_origin


@pytest.mark.parametrize(
    "weights, origin, how",
    [
        ("source", "pretrained here on source classes [0, 1]", "its own classifier"),
        ("imagenet", "ImageNet weights (keras.applications)", "a linear probe"),
        ("my.keras", "weights from the file `my.keras`", "a linear probe"),
    ],
)
def test_provenance_says_where_the_weights_came_from(weights, origin, how):
    text = weights_origin({"weights": weights, "source_accuracy": 0.9}, [0, 1])
    assert text.startswith(f"{origin}; accuracy on the source classes 0.900 ({how}")
