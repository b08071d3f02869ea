"""The zoo's families, built once per test file that asks (tests/models/test_zoo.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def zoo_models():
    """Each family's smallest member (test_zoo.MEMBERS), built once as Thaw builds it
    (random weights, no download): about 12 s on 2 cores."""
    import keras

    from pipeline.config import BackboneParams
    from pipeline.models import backbones
    from tests.models.test_zoo import MEMBERS

    keras.utils.set_random_seed(0)
    return {arch: backbones.build(arch, size, None, BackboneParams()) for arch, size in MEMBERS}
