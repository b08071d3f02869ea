"""The worker loop without training: budget counting, signals, seeds, lost trials (SQLite)."""

from __future__ import annotations

import os
import signal
import time

import optuna
import pytest

from pipeline.search import coordinator, storage, workers
from pipeline.search.budget import Budget


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage.open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=1, grace=2)
    return optuna.create_study(study_name="s", storage=store, direction="maximize")


def quick(trial) -> float:
    return trial.suggest_float("x", 0, 1)


def test_a_worker_stops_at_the_budget_and_labels_its_trials(study):
    stop = workers.StopSignal("me")
    ran = workers.run_until_budget(
        study, quick, Budget(5, 0, 5, ("a",)), who="me", stop=stop, grace=2
    )
    assert ran == 5 and len(study.trials) == 5
    assert {t.user_attrs["worker"] for t in study.trials} == {"me"}


def test_running_and_queued_trials_count_against_the_budget(study):
    quota = Budget(3, 0, 10, ("a",))
    for _ in range(2):
        study.ask()  # running elsewhere
    study.enqueue_trial({"x": 0.5})
    trials = study.get_trials(deepcopy=False)
    assert not quota.done(trials) and quota.done(trials, pending=True)


def test_first_signal_finishes_the_trial_second_abandons_it(study):
    stop = workers.StopSignal("me").install()
    try:

        def signalled_once(trial):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            return quick(trial)

        workers.run_until_budget(
            study, signalled_once, Budget(5, 0, 5, ("a",)), who="me", stop=stop, grace=2
        )
        assert [t.state.name for t in study.trials] == ["COMPLETE"]  # finished, then stopped

        for signum, reason in (
            (signal.SIGTERM, storage.STOPPED),
            (signal.SIGINT, storage.INTERRUPTED),
        ):
            stop = workers.StopSignal("me").install()

            def signalled_twice(trial, signum=signum):
                os.kill(os.getpid(), signum)
                os.kill(os.getpid(), signum)
                time.sleep(0.1)
                return quick(trial)

            quota = Budget(9, 0, 9, ("a",))
            workers.run_until_budget(study, signalled_twice, quota, who="me", stop=stop, grace=2)
            last = study.trials[-1]
            assert last.state.name == "FAIL" and last.user_attrs["fail_reason"] == reason
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_lost_trial_fails_with_its_reason_and_is_retried_once(study):
    lost = study.ask()
    lost.suggest_float("x", 0, 1)
    study._storage.record_heartbeat(lost._trial_id)  # then its worker dies: no more beats
    time.sleep(3)
    assert storage.reap_lost(study, grace=2) == [lost.number]
    assert storage.reap_lost(study, grace=2) == []  # once
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["fail_reason"] == storage.LOST
    assert trials[1].state.name == "WAITING" and trials[1].params == trials[0].params
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[1]) == 0


def test_a_trial_whose_process_here_is_gone_is_lost_at_once(study):
    """A SIGKILLed coordinator's trial is retried without waiting out the grace."""
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead, alive = study.ask(), study.ask()
    for trial, pid in ((dead, gone.pid), (alive, os.getpid())):
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr(workers.WORKER_ATTR, f"{socket.gethostname()}:{pid}")
        study._storage.record_heartbeat(trial._trial_id)  # both beat just now
    time.sleep(storage.SNAPSHOT_SECONDS + 0.1)  # this process's view of the others' trials
    assert storage.reap_lost(study, grace=3600) == [dead.number]
    states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
    assert states[dead.number] == "FAIL" and states[alive.number] == "RUNNING"


def test_a_local_worker_dies_with_its_stage_even_a_killed_one(tmp_path):
    import subprocess
    import sys

    child = (
        "import time; from pipeline.search import workers; workers.die_with_parent(); "
        "print('ready', flush=True); time.sleep(60)"
    )
    stage = (
        "import os, subprocess, sys, time\n"
        f"env = dict(os.environ, {workers.PARENT_ENV}=str(os.getpid()))\n"
        f"c = subprocess.Popen([sys.executable, '-c', {child!r}], env=env,\n"
        "                     stdout=subprocess.PIPE)\n"
        "c.stdout.readline(); print(c.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", stage], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.kill()  # SIGKILL: the stage cannot stop its workers itself
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(worker):
        time.sleep(0.1)
    assert not _running(worker)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("then", ["returns", "writes"])
def test_a_trial_failed_as_lost_under_its_worker_does_not_stop_the_worker(study, then):
    """A database restart can hold a heartbeat past the grace: another worker fails the
    running trial as lost. Its own worker, when the trial ends (or writes), goes on."""
    from optuna.trial import TrialState

    def lost_midway(trial):
        if trial.number == 0:
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", storage.LOST)
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            if then == "writes":
                trial.set_user_attr("late", 1)
        return quick(trial)

    stop = workers.StopSignal("me")
    workers.run_until_budget(
        study, lost_midway, Budget(3, 0, 3, ("a",)), who="me", stop=stop, grace=2
    )
    states = [t.state.name for t in study.trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 3, states


def test_each_worker_samples_from_its_own_seed():
    seeds = {workers.sampler_seed(0, i, "host:1") for i in range(1, 65)}
    assert len(seeds) == 64 and workers.sampler_seed(0, 0, "x") == 0
    assert workers.sampler_seed(0, None, "a:1") != workers.sampler_seed(0, None, "a:2")


def test_local_workers_get_one_accelerator_each():
    gpus = ["2", "3", "5"]
    assert [coordinator.local_worker_env(i, gpus)["CUDA_VISIBLE_DEVICES"] for i in (1, 2, 3)] == [
        "3",
        "5",
        "2",
    ]
    assert "CUDA_VISIBLE_DEVICES" not in coordinator.local_worker_env(1, []) or os.environ.get(
        "CUDA_VISIBLE_DEVICES"
    )


def test_other_workers_running_trials_are_seen_within_the_snapshot_window(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    mine = optuna.create_study(study_name="s", storage=storage.open_storage(url))
    other = optuna.load_study(study_name="s", storage=storage.open_storage(url, create=False))
    assert mine.get_trials() == []
    started = other.ask()  # another worker starts a trial
    assert mine.get_trials() == []  # one view per window: the suggestions of a trial share it
    time.sleep(storage.SNAPSHOT_SECONDS + 0.1)
    assert [t.state.name for t in mine.get_trials()] == ["RUNNING"]
    other.tell(started, 1.0)
    own = mine.ask()
    mine.tell(own, 0.5)  # finishing its own trial renews this worker's view at once
    assert [t.state.name for t in mine.get_trials()] == ["COMPLETE", "COMPLETE"]
