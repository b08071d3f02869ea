"""The screen: its decision rule, the stage on a prepared workspace, and a six-backbone
params file that sweeps only the two the screen keeps."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from pipeline import paths
from pipeline.config import ScreenParams
from pipeline.errors import ParamsError
from pipeline.screen import decision
from tests.conftest import TINY_PARAMS, write_params


def _scores(rows: list[tuple[str, int, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"backbone": b, "image_size": s, "frozen_fraction": f, "probe": p, "knn": p, "logme": p}
            for b, s, f, p in rows
        ]
    )


SCORES = _scores(
    [
        ("a", 32, 1.0, 0.70),
        ("a", 32, 0.5, 0.90),  # a's best cut at 32 px
        ("a", 64, 1.0, 0.80),
        ("b", 32, 1.0, 0.85),
        ("b", 64, 1.0, 0.95),
        ("c", 32, 1.0, 0.60),
    ]
)


def test_a_pair_is_ranked_by_its_best_cut():
    pairs = decision.ranked_pairs(SCORES, "probe")
    assert list(zip(pairs.backbone, pairs.image_size, pairs["rank"])) == [
        ("b", 64, 1), ("a", 32, 2), ("b", 32, 3), ("a", 64, 4), ("c", 32, 5),
    ]  # fmt: skip
    assert pairs.iloc[1].frozen_fraction == 0.5


def test_keep_all_sweeps_every_backbone_at_every_size():
    found = decision.decide(SCORES, ScreenParams(keep="all"), ["a", "b", "c"])
    assert found == {
        "a": decision.Decision(True, (32, 64)),
        "b": decision.Decision(True, (32, 64)),
        "c": decision.Decision(True, (32,)),
    }


def test_keep_two_sweeps_the_two_best_pairs_only():
    found = decision.decide(SCORES, ScreenParams(keep=2), ["a", "b", "c"])
    assert found == {
        "a": decision.Decision(True, (32,)),
        "b": decision.Decision(True, (64,)),
        "c": decision.Decision(False, ()),
    }


def test_a_tie_goes_to_the_smaller_input_then_the_name():
    tied = _scores([("b", 64, 1.0, 0.9), ("b", 32, 1.0, 0.9), ("a", 64, 1.0, 0.9)])
    pairs = decision.ranked_pairs(tied, "probe")
    assert list(zip(pairs.backbone, pairs.image_size)) == [("b", 32), ("a", 64), ("b", 64)]


@pytest.mark.parametrize(
    "screen, message",
    [({"keep": 0}, "keep 0"), ({"keep": "some"}, "keep 'some'"), ({"score": "auc"}, "'auc'")],
)
def test_bad_screen_params_are_refused_naming_the_key(workspace, screen, message):
    from pipeline.preflight import load_params

    params = json.loads(json.dumps(TINY_PARAMS))
    params["sweep"]["screen"] = screen
    write_params(workspace, params)
    with pytest.raises(ParamsError) as caught:
        load_params()
    assert "sweep.screen" in str(caught.value) and message in str(caught.value)


def _run(module, monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", [module.__name__, *args])
    module.main()


def test_the_stage_scores_every_cut_and_the_sweep_reads_its_activations(workspace, monkeypatch):
    from pipeline.preflight import load_params
    from pipeline.stages import score, screen
    from pipeline.train.context import load_context

    _run(score, monkeypatch, "small_cnn")
    _run(screen, monkeypatch)
    scores = pd.read_csv(decision.scores_path("small_cnn"))
    assert set(scores.backbone) == {"small_cnn"} and len(scores) >= 2
    assert scores.frozen_fraction.is_unique and (scores.frozen_fraction > 0).all()
    assert scores.probe.between(0, 1).all() and scores.knn.between(0, 1).all()
    assert scores.logme.notna().all()
    assert decision.read("small_cnn") == decision.Decision(True, (16,))
    ctx = load_context("small_cnn", load_params(), json.loads(paths.MANIFEST.read_text()))
    for cut in scores.cut:
        ctx.cache.activations(int(cut), "train")
    assert ctx.cache.stats.computed == 0 and ctx.cache.stats.disk_hits == len(scores)


WIDTHS = {"cnn2": 2, "cnn3": 3, "cnn4": 4, "cnn5": 5, "cnn6": 6, "cnn8": 8}


@pytest.mark.slow
def test_six_backbones_with_keep_two_sweep_only_the_two_the_screen_ranks_first(
    workspace, monkeypatch
):
    """A params file with six backbones and sweep.screen.keep: 2, run through every stage:
    the screen scores all six, two are swept, finalised and reported, four are not."""
    from pipeline.stages import backbone, final, linear_baseline, report, score, screen, sweep

    params = json.loads(json.dumps(TINY_PARAMS))
    params["backbones"] = {
        name: {"arch": "small_cnn", "weights": "source", "width": width}
        for name, width in WIDTHS.items()
    }
    params["search"]["strategies"] = ["head_only"]
    params["sweep"].update(n_trials=1, screen={"keep": 2, "score": "probe"})
    params["report"].update(top_k=1, seeds=2, scratch=False)
    write_params(workspace, params)
    for name in WIDTHS:
        _run(backbone, monkeypatch, name)
        _run(score, monkeypatch, name)
    _run(screen, monkeypatch)
    pairs = pd.read_csv(paths.SCREEN_DIR / "pairs.csv")
    assert set(decision.read_scores(list(WIDTHS)).backbone) == set(WIDTHS)
    kept = list(pairs.backbone[:2])
    for name in WIDTHS:
        _run(sweep, monkeypatch, name)
        _run(final, monkeypatch, name)
        swept = (paths.SWEEP_DIR / name / "trials.csv").is_file()
        assert swept == (name in kept), name
        assert (paths.SWEEP_DIR / name / decision.SCREENED_OUT).is_file() == (name not in kept)
        assert (paths.FINAL_DIR / name / "runs.csv").is_file() == (name in kept)
    _run(linear_baseline, monkeypatch)
    _run(report, monkeypatch)
    trials = pd.read_csv(paths.REPORTS_DIR / "trials.csv")
    assert set(trials.backbone) == set(kept)
    text = (paths.REPORTS_DIR / "report.md").read_text()
    assert "the top 2 of 6 pairs went on to the sweeps; screened out: " in text
    table = text.split("## Screen")[1].split("Kendall")[0]
    rows = [
        line.split(" | ") for line in table.splitlines() if line.startswith("| ") and "px" in line
    ]
    assert {r[1] for r in rows} == set(WIDTHS)  # every candidate of every backbone
    assert all((r[7] == "yes") == (r[1] in kept) for r in rows)
