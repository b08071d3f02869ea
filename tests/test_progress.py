"""Long work says how far it is and how long is left; a stage says how long it took."""

from __future__ import annotations

import sys
from types import SimpleNamespace

from pipeline import progress
from pipeline.errors import run_main
from pipeline.search import budget
from pipeline.search.objective import Progress


def test_in_a_log_a_bar_is_whole_lines_with_the_count(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    assert list(progress.bar(range(3), "reading", unit="img")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "\r" not in err  # not a terminal: no carriage returns piling up in the log
    lines = err.strip().splitlines()
    assert lines[-1].startswith("reading: 100%") and "3/3" in lines[-1]


def test_a_stage_ends_with_its_name_and_duration(capsys, monkeypatch):
    def sweep_main():
        pass

    sweep_main.__module__ = "pipeline.stages.sweep"
    monkeypatch.setattr(sys, "argv", ["sweep.py", "mobilenet_v2"])
    run_main(sweep_main, tensorflow=False)
    assert capsys.readouterr().err.startswith("sweep mobilenet_v2: done in ")


def test_a_sweep_line_says_how_long_is_left_at_its_pace(monkeypatch):
    quota = budget.Budget(completed=4, per_strategy=1, cap=10, strategies=("a", "b"))
    line = Progress("net", quota, max_failures=5)
    monkeypatch.setattr("pipeline.search.objective.time.monotonic", lambda: 100.0)
    line.start, line.seen = 80.0, 1  # one trial finished in 20 s
    done = [SimpleNamespace(params={"strategy": "a"}, state=SimpleNamespace(name="COMPLETE"))]
    assert line.left(done) == ", ~60 s left"  # 3 more completed trials wanted, 20 s each
    assert progress.eta(45) == "45 s" and progress.eta(7200) == "2.0 h"
