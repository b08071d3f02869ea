"""End to end: `dvc repro` in a temporary copy of the project, with a tiny params.yaml."""

from __future__ import annotations

import io
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


def sh(args: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def copy_project(folder: Path) -> Path:
    """The pipeline's code, dvc.yaml and the (empty) default image folder in `folder`."""
    shutil.copytree(
        ROOT / "pipeline", folder / "pipeline", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "dvc.yaml", folder)
    shutil.copytree(ROOT / "images", folder / "images")  # data.folder: a dependency of prepare
    return folder


def tiny_sweep_params() -> dict:
    """TINY_PARAMS with two strategies, two trials, top 1 over two seeds."""
    params = json.loads(json.dumps(TINY_PARAMS))
    params["search"]["strategies"] = ["head_only", "freeze_depth"]
    params["sweep"].update(n_trials=2, min_trials_per_strategy=1)
    params["report"].update(top_k=1, seeds=2)
    return params


def repro_from_nothing(folder: Path, params: dict) -> str:
    """git and dvc init in `folder`, then `dvc repro`; its output."""
    write_params(folder, params)
    sh(["git", "init", "-q"], folder)
    sh(["dvc", "init", "-q"], folder)
    return sh(["dvc", "repro"], folder)


def make_project(folder: Path) -> Path:
    """A fresh copy of the pipeline with tiny params, reproduced from nothing."""
    params = tiny_sweep_params()
    params["backbones"]["small_cnn_wide"] = {"arch": "small_cnn", "weights": "source", "width": 6}
    output = repro_from_nothing(copy_project(folder), params)
    (folder / "repro.log").write_text(output)  # for the test of what a user sees
    return folder


@pytest.fixture(scope="module")
def first_results(tmp_path_factory) -> Path:
    """What the first run wrote, kept apart: later tests change the project."""
    return tmp_path_factory.mktemp("first_results")


@pytest.fixture(scope="module")
def project(tmp_path_factory, first_results) -> Path:
    folder = make_project(tmp_path_factory.mktemp("project"))
    for name in ("trials.csv", "headline.csv", "depth_curve.csv", "metrics.json"):
        shutil.copy(folder / "reports" / name, first_results / name)
    return folder


# the only columns allowed to differ between runs: timings (training seconds, latencies),
# the fronts drawn on them, and which process ran a trial (host:pid)
LATENCY = [f"latency_b{b}{end}" for b in (1, 32) for end in ("_ms", "_min_ms", "_max_ms")]
TIMINGS = ["device_seconds", "device", "front_time_overall", "front_time_backbone", "worker",
           *LATENCY, "front_latency_overall", "front_latency_backbone"]  # fmt: skip


def test_same_seed_same_answer_in_a_second_fresh_copy(project, first_results, tmp_path):
    again = make_project(tmp_path / "again")
    for name in ("trials.csv", "headline.csv", "depth_curve.csv"):
        first = pd.read_csv(first_results / name)
        second = pd.read_csv(again / "reports" / name)
        drop = [c for c in first.columns if c in TIMINGS]
        pd.testing.assert_frame_equal(first.drop(columns=drop), second.drop(columns=drop))
    first = json.loads((first_results / "metrics.json").read_text())
    second = json.loads((again / "reports" / "metrics.json").read_text())
    for metrics in (first, second):
        for entry in metrics.values():
            entry.pop("device_seconds", None)
    assert first == second


def test_dvc_repro_shows_thaws_own_lines_only(project):
    """No TensorFlow or TFDS lines that say nothing about the run: the start-up notices,
    the op-determinism rewrite's `E0000 … node_def_util`, TFDS's "Unknown size" banner."""
    output = (project / "repro.log").read_text()
    assert "Running stage 'final@small_cnn'" in output and "report:" in output
    for noise in ("0000 00:00:", "node_def_util", "Downloading and preparing dataset",
                  "Unknown size", "oneDNN custom operations"):  # fmt: skip
        assert noise not in output, noise


def test_repro_writes_the_report(project):
    reports = project / "reports"
    trials = pd.read_csv(reports / "trials.csv")
    assert REQUIRED_COLUMNS <= set(trials.columns)
    assert set(trials.backbone) == {"small_cnn", "small_cnn_wide"}
    assert len(trials) == 4 and trials.trainable_params.nunique() > 1
    metrics = json.loads((reports / "metrics.json").read_text())
    backbones = {"small_cnn", "small_cnn_wide"}
    assert set(metrics) == backbones | {f"{b}_scratch" for b in backbones} | {"linear_pixels"}
    assert 0 <= metrics["small_cnn"]["test_accuracy"] <= 1
    headline = pd.read_csv(reports / "headline.csv")
    # per backbone: the top 1 and each strategy's best (3 rows with scratch), the probe
    assert len(headline) == 2 * 4 + 1 and (headline.seeds == 2).all()
    assert (headline.strategy == "linear_probe").sum() == 2
    assert headline.front_params_overall.any() and headline.front_time_overall.any()
    report = (reports / "report.md").read_text()
    opening = "# Thaw report\n\n## Recommendation\n\n- **"
    transfer, baseline = "Use** `small_cnn", "Transfer did not pay here: use "  # baselines compete
    assert report.startswith(opening + transfer) or report.startswith(opening + baseline)
    assert "**Which strategy wins on test**" in report and "## Strategies" in report
    for section in ("Headline: test accuracy", "Freeze depth", "Which search parameters",
                    "Provenance", "CPU seconds", "tensorflow "):  # fmt: skip
        assert section in report, section
    for png in reports.glob("*.png"):
        assert f"]({png.name})" in report, png.name
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    assert len(list(reports.glob("*.png"))) == 5
    # the export stage ran before the report: its files, tested, are in the recommendation
    assert "### The files: models/recommended/" in report and "TFLite int8" in report
    assert headline.latency_b1_ms.notna().any() and headline.front_latency_overall.any()


def test_second_repro_is_up_to_date(project):
    out = sh(["dvc", "repro"], project)
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'weights':"], out  # it hashes model files: always runs
    assert "Stage 'sweep@small_cnn' didn't change, skipping" in out


def test_dvc_metrics_and_plots_work(project):
    shown = sh(["dvc", "metrics", "show"], project)
    assert "test_accuracy" in shown and "frozen_share" in shown
    assert "head_only" in shown or "freeze_depth" in shown  # the selected strategy, a string
    sh(["dvc", "plots", "show", "-o", "plots_out"], project)
    assert (project / "plots_out" / "index.html").is_file()


def test_editing_the_report_section_reruns_only_the_report(project):
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("top_n: 5", "top_n: 3"))
    out = sh(["dvc", "repro"], project)
    assert "Running stage 'report'" in out
    assert "Running stage 'sweep" not in out and "Running stage 'backbone" not in out
    assert "Running stage 'final" not in out


def test_each_stage_reruns_only_for_the_keys_it_reads(project):
    params = (project / "params.yaml").read_text()
    edited = params.replace("- freeze_depth\n", "- freeze_depth\n  - lp_ft\n", 1)
    assert edited != params
    (project / "params.yaml").write_text(edited)
    try:
        status = sh(["dvc", "status"], project, stdout_only=True)
    finally:
        (project / "params.yaml").write_text(params)
    assert "sweep@small_cnn" in status and "report" in status
    assert "linear_baseline" not in status and "backbone@" not in status and "prepare" not in status


def test_an_experiment_with_another_seed_shows_both_test_accuracies(project):
    sh(["git", "add", "-A"], project)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], project)
    sh(["dvc", "exp", "run", "-S", "seed=7"], project)
    shown = pd.read_csv(io.StringIO(sh(["dvc", "exp", "show", "--csv"], project, True)))
    column = "small_cnn.test_accuracy"
    assert column in shown.columns, list(shown.columns)
    assert shown[column].notna().sum() >= 2  # the workspace/baseline and the seed=7 experiment
    assert 7 in set(shown["seed"].dropna().astype(int))
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if line.startswith("dvc exp show --md"))
    table = sh(["bash", "-c", command], project, stdout_only=True)  # the README's own command
    assert "small_cnn.strategy" in table and "small_cnn.test_accuracy" in table
    assert max(len(line) for line in table.splitlines()) < 600  # readable, not 3,500 wide


def test_thaw_status(project):
    out = sh([str(Path(sys.executable).parent / "thaw"), "status"], project)
    for name in ("small_cnn", "small_cnn_wide"):
        assert f"{name} ({name}-" in out and "2/2 complete, 0 pruned" in out
