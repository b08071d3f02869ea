"""The process that writes and tests the SavedModel beside the final stage: its failure
fails the stage with a clear error, and one never told to go is ended, not left behind."""

from __future__ import annotations

import pytest

from pipeline.data import datasets
from pipeline.errors import ThawError
from pipeline.paths import MANIFEST
from pipeline.winner.saved_model_job import SavedModelJob


def test_an_export_process_that_fails_fails_the_stage_with_a_clear_error(workspace, tmp_path):
    manifest = datasets.read_manifest(MANIFEST)
    job = SavedModelJob(tmp_path / "no_model_here", manifest, seed=0, deterministic=True)
    job.wait_ready()
    job.write_and_test()
    with pytest.raises(ThawError, match="saved_model and testing the saved model failed"):
        job.result()
    assert not (tmp_path / "no_model_here" / "saved_model").exists()
    idle = SavedModelJob(tmp_path / "never", manifest, seed=0, deterministic=True)
    idle.wait_ready()
    idle.stop()  # a stage that ends without go: the waiting process is ended, not left behind
    assert idle.process.returncode is not None
