"""Shared fixtures: seeded Keras, tiny models, a tiny prepared workspace, PostgreSQL.

The suite runs on pytest-xdist workers (`-n` in pyproject.toml), each test file on one
worker, so a module fixture is built once. Each worker is a process with its own session
fixtures: what is costly and only read (the image files, the prepared workspace) is built
once per run by the first worker that needs it (`built_once`); a test that writes gets
its own copy (`workspace`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# One thread per TensorFlow op, as every stage sets (pipeline/train/devices.py
# tune_threads): whichever test starts TensorFlow first in a worker, and the two workers
# together, then use the cores as a stage does.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first, each file's tests in their order: the `dvc repro` files of
    tests/stages/ (4 and 2 minutes on 2 cores), then the other slow tests, then the rest.
    The workers take files in this order, so the longest start at once and the short
    ones fill in around them, instead of one worker running a repro alone at the end."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("slow") is None:
            return 2
        return 0 if item.path.parent.name == "stages" else 1

    items.sort(key=rank)


def shared_folder(tmp_path_factory) -> Path:
    """This run's temporary folder that every xdist worker sees (each worker's own base
    folder lies inside it); without xdist, the base folder itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`name` in the shared folder, made by `build(folder)` in the first worker to ask;
    the others wait on a lock, then use what it made. Readers must not write to it."""
    root = shared_folder(tmp_path_factory)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session", autouse=True)
def _image_files(tmp_path_factory):
    """The prepared images' files (image_store.py) in a temporary folder, not the repo's
    results/cache: keyed by content, and written whole or not at all, so every test of
    every worker can share it."""
    from pipeline.data import image_store

    folder = shared_folder(tmp_path_factory) / "image_store"
    folder.mkdir(exist_ok=True)
    image_store.FOLDER = folder


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


def prepare_workspace(folder: Path) -> None:
    """params.yaml, data/ and models/small_cnn/ in `folder`, from the real stages' code."""
    from pipeline import paths
    from pipeline.data import datasets, preparation
    from pipeline.preflight import load_params
    from pipeline.train import pretrain

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


@pytest.fixture(scope="session")
def prepared_workspace(tmp_path_factory) -> Path:
    """One prepared tiny dataset and one pretrained tiny backbone for the whole run
    (every worker): read it, or take a `workspace` copy to write."""
    return built_once(tmp_path_factory, "workspace", prepare_workspace)


@pytest.fixture
def workspace(prepared_workspace, tmp_path, monkeypatch) -> Path:
    """A private copy of the prepared workspace, as the working directory."""
    folder = tmp_path / "ws"
    shutil.copytree(prepared_workspace, folder)
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture(scope="session")
def pg(tmp_path_factory):
    """A real PostgreSQL server on a Unix socket (tests/postgres.py), one per worker: its
    data folder and socket lie in the worker's own temporary folder and it opens no TCP
    port, so a test that stops or restarts it cuts no other worker's connections."""
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
