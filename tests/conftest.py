"""Shared fixtures: seeded Keras, tiny models, and a tiny prepared workspace."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Small enough that pretraining and a trial take a second or two on 2 CPU cores.
TINY_PARAMS = {
    "seed": 0,
    "deterministic": True,
    "data": {
        "dataset": "digits",
        "folder": "images",
        "image_size": 16,
        "train_per_class": 5,
        "val_per_class": 10,
    },  # fmt: skip
    "pretrain": {"epochs": 4, "batch_size": 64, "learning_rate": 0.01},
    "backbones": {"small_cnn": {"weights": "source", "width": 4}},
    "search": {
        "freeze_depth": {"low": 0.0, "high": 1.0, "candidates": 3},
        "head_units": [0, 8],
        "learning_rate": {"low": 0.001, "high": 0.01},
        "epochs": 1,
        "head_only_epochs": 2,
        "batch_size": 16,
        "patience": 0,  # linear_baseline declares these in dvc.yaml, so DVC needs them in the file
    },
    "sweep": {"n_trials": 2},
    "report": {"top_n": 5, "scratch": True, "selection": "one_se", "curve_seeds": 1},
}


@pytest.fixture(scope="session", autouse=True)
def _image_files(tmp_path_factory):
    """The prepared images' files (image_store.py) in a temporary folder, not the repo's
    results/cache: keyed by content, so every test can share it."""
    from pipeline.data import image_store

    image_store.FOLDER = tmp_path_factory.mktemp("image_store")


@pytest.fixture(autouse=True)
def _seeded():
    import keras

    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


def write_params(folder: Path, params: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def prepared_workspace(tmp_path_factory) -> Path:
    """A folder with params.yaml, data/ and models/small_cnn/ from the real stages."""
    import os

    from pipeline import paths
    from pipeline.data import datasets, preparation
    from pipeline.preflight import load_params
    from pipeline.train import pretrain

    folder = tmp_path_factory.mktemp("workspace")
    write_params(folder, TINY_PARAMS)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        params = load_params()
        manifest = preparation.prepare(params.data, params.seed)
        datasets.write_manifest(manifest, paths.MANIFEST)
        model, meta = pretrain.make_backbone(
            "small_cnn", params.backbones["small_cnn"], manifest, params.pretrain, params.seed
        )
        pretrain.save_backbone(model, meta, paths.MODELS_DIR / "small_cnn")
    finally:
        os.chdir(cwd)
    return folder


@pytest.fixture
def workspace(prepared_workspace, tmp_path, monkeypatch) -> Path:
    """A private copy of the prepared workspace, as the working directory."""
    folder = tmp_path / "ws"
    shutil.copytree(prepared_workspace, folder)
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    """A real PostgreSQL server on a Unix socket (tests/postgres.py), one per run."""
    from tests.postgres import Server

    server = Server(tmp_path_factory.mktemp("pg"))
    yield server
    server.close()


@pytest.fixture
def db(pg, request) -> str:
    """A fresh, empty database for this test; its URL."""
    import hashlib

    name = request.node.name.lower().replace("[", "_").replace("]", "")[:32]
    return pg.create_database(
        f"{name}_{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]}"
    )
