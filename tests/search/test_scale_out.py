"""Many workers on one study, against a real PostgreSQL server (tests/postgres.py).

Workers are separate processes (`thaw worker`, the sweep stage as coordinator),
so each test simulates machines with processes on this one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from sqlalchemy.engine import make_url

from pipeline.search import storage, studies, urls
from tests.conftest import TINY_PARAMS, write_params

pytestmark = pytest.mark.slow
SECRET = "s3cr3t-Pa55"


def project(workspace: Path, url: str, epochs: int = 2, **sweep) -> dict:
    params = json.loads(json.dumps(TINY_PARAMS))
    params["sweep"].update(
        {"storage": url, "heartbeat_seconds": 1, "lost_after_seconds": 8,
         "pruner": {"kind": "none"}, "min_trials_per_strategy": 1, **sweep}
    )  # fmt: skip
    params["search"]["epochs"] = epochs
    write_params(workspace, params)
    return params


def env(**extra) -> dict:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return dict(os.environ, PATH=path, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def start(args: list[str], cwd: Path, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def coordinator(cwd: Path, **extra) -> subprocess.Popen:
    return start(["pipeline.stages.sweep", "small_cnn"], cwd, **extra)


def worker(cwd: Path, worker_id: int | None = None, **extra) -> subprocess.Popen:
    args = ["pipeline.cli", "worker", "small_cnn"]
    return start(
        args + ([] if worker_id is None else ["--worker-id", str(worker_id)]), cwd, **extra
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def load(url: str, workspace: Path):
    pointer = json.loads((workspace / "results/optuna/small_cnn/study.json").read_text())
    return optuna.load_study(study_name=pointer["study_name"], storage=url)


def states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def test_four_workers_share_one_budget(workspace, db, pg, capsys):
    from pipeline import cli

    # Tiny trials (0.2 s once the coordinator's cache is warm) while the local workers
    # still import TensorFlow and trace their first trial on 2 cores: a budget of 40
    # leaves each of them some. The bounds, [24, 27] for 24, scale to [40, 43].
    project(workspace, db, n_trials=40, workers=4)
    database = make_url(db).database
    peak: dict[str, int] = {}  # most connections seen at once, per Thaw process
    done = threading.Event()

    def watch():
        while not done.is_set():
            for name, n in pg.connections_per_client(database).items():
                peak[name] = max(n, peak.get(name, 0))
            done.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    proc = coordinator(workspace)
    busiest = (0, "")  # the `thaw status` taken while most workers were running
    while proc.poll() is None:
        time.sleep(0.3)
        if (workspace / "results/optuna/small_cnn/study.json").is_file():
            assert cli.main(["status"]) == 0
            out = capsys.readouterr().out
            found = re.search(r"(\d+) running on (\d+) worker", out)
            if found and int(found.group(2)) > busiest[0]:
                busiest = (int(found.group(2)), out)
    finish(proc)
    done.set()
    watcher.join()
    print(busiest[1])
    assert busiest[0] >= 2, busiest  # status saw several workers at once

    study = load(db, workspace)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in studies.FINISHED]
    assert 40 <= len(finished) <= 43, states(study)  # overshoot at most workers - 1
    assert len({t.number for t in trials}) == len(trials)
    assert "RUNNING" not in states(study) and "WAITING" not in states(study)
    by_worker: dict[str, list] = {}
    for t in sorted(trials, key=lambda t: t.number):
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    assert len(by_worker) == 4, sorted(by_worker)
    first_rates = [ts[0].params["learning_rate"] for ts in by_worker.values()]
    assert len(set(first_rates)) == 4, first_rates  # start-up trials differ between workers
    this = f"thaw {socket.gethostname()}:{os.getpid()}"  # the test's own `thaw status` calls
    workers_seen = {n: k for n, k in peak.items() if n.startswith("thaw ") and n != this}
    assert {name.split()[1] for name in workers_seen} >= set(by_worker), peak
    assert max(workers_seen.values()) <= 2, peak  # each process: its trial and its heartbeat
    table = pd.read_csv(workspace / "results/sweep/small_cnn/trials.csv")
    assert table.worker.nunique() == 4


def test_killed_workers_trials_fail_with_a_reason_and_run_once_more(workspace, db):
    project(workspace, db, n_trials=30)
    doomed = [worker(workspace, 1), worker(workspace, 2)]  # waiting when the study appears
    lead = coordinator(workspace)
    url = db
    while not (workspace / "results/optuna/small_cnn/study.json").is_file():
        time.sleep(0.5)
    study = load(url, workspace)
    host = os.uname().nodename
    labels = [f"{host}:{proc.pid}" for proc in doomed]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and all(proc.poll() is None for proc in doomed):
        busy = {
            t.user_attrs.get("worker") for t in study.get_trials(deepcopy=False)
            if t.state.name == "RUNNING"
        }  # fmt: skip
        if set(labels) <= busy:
            break
        time.sleep(0.05)
    for proc in doomed:  # both at once: a dead worker's trial is retried at once, and the
        assert proc.poll() is None, proc.communicate()[0][-3000:]  # other must not run it
        proc.send_signal(signal.SIGKILL)
    for proc in doomed:
        proc.wait()
    killed = [  # still running, or already failed as lost (its process here is gone)
        t.number for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("worker") in labels
        and (t.state.name == "RUNNING" or t.user_attrs.get("fail_reason") == storage.LOST)
    ]  # fmt: skip
    assert len(killed) == 2, killed  # each died mid-trial
    again = worker(workspace, 3)
    finish(lead)
    finish(again)

    trials = {t.number: t for t in load(url, workspace).get_trials(deepcopy=False)}
    for number in killed:
        assert trials[number].state.name == "FAIL"
        assert trials[number].user_attrs["fail_reason"] == storage.LOST
        retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == number]
        assert len(retries) == 1  # the lost run's suggestions, then the rest sampled anew
        assert trials[number].params.items() <= retries[0].params.items()
        assert retries[0].state.name == "COMPLETE"
    finished = [t for t in trials.values() if t.state.name in studies.FINISHED]
    assert len(finished) >= 30
    assert not [t for t in trials.values() if t.state.name in ("RUNNING", "WAITING")]
    table = pd.read_csv(workspace / "results/sweep/small_cnn/trials.csv")
    assert set(table[table.state == "FAIL"].fail_reason) == {storage.LOST}


def test_eight_workers_started_at_once_on_an_empty_database(workspace, db):
    project(workspace, db, n_trials=8)
    crowd = [worker(workspace, i) for i in range(1, 9)]
    time.sleep(1.0)
    lead = coordinator(workspace)
    logs = [finish(proc) for proc in [lead, *crowd]]
    assert not any("Traceback" in log for log in logs), [log[-2000:] for log in logs]
    assert any("waiting for study" in log for log in logs[1:])
    study = load(db, workspace)
    assert "RUNNING" not in states(study)
    assert 8 <= states(study).get("COMPLETE", 0) <= 8 + 8


def coordinator_past(workspace: Path, url: str, complete: int):
    """A coordinator, once its study holds `complete` completed trials; their values."""
    lead = coordinator(workspace)
    while not (workspace / "results/optuna/small_cnn/study.json").is_file():
        time.sleep(0.5)
    study = load(url, workspace)
    while states(study).get("COMPLETE", 0) < complete:
        time.sleep(0.2)
    return lead, {t.number: t.value for t in study.get_trials() if t.value is not None}


def test_a_server_restart_mid_sweep_loses_no_trial(workspace, db, pg):
    project(workspace, db, n_trials=16, workers=2)
    lead, before = coordinator_past(workspace, db, complete=4)
    pg.restart(down_seconds=4)
    log = finish(lead)
    assert "unreachable" in log and "reachable again" in log, log[-3000:]
    after = load(db, workspace)
    values = {t.number: t.value for t in after.get_trials(deepcopy=False)}
    assert all(values[n] == v for n, v in before.items())
    assert states(after).get("COMPLETE", 0) >= 16 and "RUNNING" not in states(after)


def test_a_database_down_past_the_limit_stops_workers_and_a_rerun_resumes(workspace, db, pg):
    project(workspace, db, n_trials=12, workers=2, outage_seconds=3)
    lead, before = coordinator_past(workspace, db, complete=3)
    pg.stop()
    out, _ = lead.communicate(timeout=300)
    pg.start()
    assert lead.returncode != 0, out[-3000:]
    assert "has been unreachable for" in out and urls.mask(db) in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    finish(coordinator(workspace))  # resumes: the trials cut off are lost, failed, retried
    after = load(db, workspace)
    values = {t.number: t.value for t in after.get_trials(deepcopy=False)}
    assert all(values[n] == v for n, v in before.items())
    assert states(after).get("COMPLETE", 0) >= 12 and "RUNNING" not in states(after)


def test_a_url_with_a_password_never_reaches_a_file_or_the_log(workspace, db):
    project(workspace, db, n_trials=2)
    secret_url = db.replace("postgres@", f"postgres:{SECRET}@")
    out = finish(coordinator(workspace, THAW_STORAGE=secret_url))
    status = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "status"],
        cwd=workspace, env=env(THAW_STORAGE=secret_url), capture_output=True, text=True,
    )  # fmt: skip
    assert status.returncode == 0 and "2/2 complete" in status.stdout, status.stdout
    for text in (out, status.stdout, status.stderr):
        assert SECRET not in text
    written = [p for p in workspace.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    assert not [p for p in written if SECRET.encode() in p.read_bytes()]
    pointer = json.loads((workspace / "results/optuna/small_cnn/study.json").read_text())
    assert pointer["storage"] == urls.mask(secret_url) and "***" in pointer["storage"]


def test_an_unreachable_database_is_named_masked(tmp_path):
    url = f"postgresql+psycopg://thaw:{SECRET}@/thaw?host={tmp_path}"
    with pytest.raises(storage.StorageUnreachable) as caught:
        store = storage.open_storage(url, create=False, outage_limit=1)
        store.get_all_studies()
    message = str(caught.value)
    assert SECRET not in message and "thaw:***@" in message


def test_copying_a_sqlite_study_to_postgres_keeps_everything(workspace, db, monkeypatch):
    from pipeline import cli
    from pipeline.data import datasets
    from pipeline.paths import MANIFEST
    from pipeline.preflight import load_params
    from pipeline.search import coordinator

    raw = project(workspace, "default", n_trials=3)
    raw["sweep"]["pruner"] = {"kind": "median", "startup_trials": 1, "warmup_epochs": 1}
    write_params(workspace, raw)
    study, _ = coordinator.sweep("small_cnn", load_params(), datasets.read_manifest(MANIFEST))
    # THAW_STORAGE, the documented way to give a URL, names the source; --to still wins
    monkeypatch.setenv("THAW_STORAGE", "sqlite:///results/optuna/small_cnn/study.db")
    assert cli.main(["studies", "copy", "small_cnn", "--to", db]) == 0
    copied = optuna.load_study(study_name=study.study_name, storage=db)

    def frozen(s):
        return [
            (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs,
             t.system_attrs, t.intermediate_values, t.datetime_start, t.datetime_complete)
            for t in s.get_trials(deepcopy=False)
        ]  # fmt: skip

    assert frozen(copied) == frozen(study)
    assert copied.user_attrs == study.user_attrs
    assert cli.main(["studies", "copy", "small_cnn", "--to", db]) == 2  # never twice
