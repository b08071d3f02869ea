"""End to end: `dvc repro` in a temporary copy of the project, with a tiny params.yaml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT, TINY_PARAMS, write_params

pytestmark = pytest.mark.slow

REQUIRED_COLUMNS = {
    "backbone",
    "trial",
    "state",
    "freeze_depth",
    "head_units",
    "learning_rate",
    "val_accuracy",
    "trainable_params",
    "total_params",
    "device",
    "device_seconds",
}


def sh(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("project")
    shutil.copytree(
        ROOT / "pipeline", folder / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "dvc.yaml", folder)
    params = json.loads(json.dumps(TINY_PARAMS))
    params["backbones"]["small_cnn_wide"] = {"arch": "small_cnn", "weights": "source", "width": 6}
    write_params(folder, params)
    sh(["git", "init", "-q"], folder)
    sh(["dvc", "init", "-q"], folder)
    sh(["dvc", "repro"], folder)
    return folder


def test_repro_writes_the_report(project):
    reports = project / "reports"
    trials = pd.read_csv(reports / "trials.csv")
    assert REQUIRED_COLUMNS <= set(trials.columns)
    assert set(trials.backbone) == {"small_cnn", "small_cnn_wide"}
    assert len(trials) == 4 and trials.trainable_params.nunique() > 1
    metrics = json.loads((reports / "metrics.json").read_text())
    assert set(metrics) == {"small_cnn", "small_cnn_wide"}
    report = (reports / "report.md").read_text()
    assert "Best configuration per backbone" in report and "CPU seconds" in report
    png = (reports / "accuracy_vs_trainable_params.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_second_repro_is_up_to_date(project):
    assert "up to date" in sh(["dvc", "repro"], project)


def test_dvc_metrics_and_plots_work(project):
    assert "best_val_accuracy" in sh(["dvc", "metrics", "show"], project)
    sh(["dvc", "plots", "show", "-o", "plots_out"], project)
    assert (project / "plots_out" / "index.html").is_file()


def test_editing_the_report_section_reruns_only_the_report(project):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("top_n: 5", "top_n: 3"))
    out = sh(["dvc", "repro"], project)
    assert "Running stage 'report'" in out
    assert "Running stage 'sweep" not in out and "Running stage 'backbone" not in out


def test_thaw_status(project):
    out = sh([str(Path(sys.executable).parent / "thaw"), "status"], project)
    assert "small_cnn: 2/2 finished" in out and "small_cnn_wide: 2/2 finished" in out
