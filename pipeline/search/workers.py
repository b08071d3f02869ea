"""Workers: processes on any machine that run one backbone's trials against one study.

The loop (`run_until_budget`) is the same for the DVC stage (the coordinator, worker 0)
and for `thaw worker`, which first joins the study (`join_study`): before each trial it
fails trials whose worker was lost, and starts one only while the study's finished +
running + waiting trials leave room in the budget, so W workers overshoot it by at most
W - 1. Each worker's sampler is seeded from `seed` and its worker id, and TPE's constant
liar counts running trials, so workers do not all try the same start-up trials.

A first SIGTERM or SIGINT (Ctrl-C) lets the current trial finish; a second abandons
it (recorded FAIL, reason "stopped", or "interrupted" for Ctrl-C). Schedulers send
SIGTERM before they kill.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

from pipeline.errors import ThawError
from pipeline.search import storage
from pipeline.search.budget import Budget, best_trial, strategy_of
from pipeline.search.studies import FINISHED

WORKER_ATTR = "worker"


PARENT_ENV = "THAW_PARENT_PID"  # set by the stage for the local workers it starts
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """A local worker (PARENT_ENV set) gets SIGTERM when its stage dies, even by SIGKILL,
    so it does not sweep on unsupervised beside the next run's workers; it then ends
    its trial as for any SIGTERM. Linux only (prctl); elsewhere the stage's own
    `finish` still stops its workers when it fails normally."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # the stage died before the call: nothing would signal
        os.kill(os.getpid(), signal.SIGTERM)


def label() -> str:
    """This process as the `worker` column shows it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def sampler_seed(seed: int, worker_id: int | None, who: str) -> int:
    """Worker 0 (the stage) keeps `seed`, so one worker reproduces a one-machine run."""
    if worker_id == 0:
        return seed
    key = f"{seed}:{worker_id if worker_id is not None else who}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


class Stopped(Exception):
    """A second stop signal, raised inside the trial it abandons; `reason` is recorded."""

    def __init__(self, signum: int):
        super().__init__(f"{signal.Signals(signum).name} received twice")
        self.reason = storage.INTERRUPTED if signum == signal.SIGINT else storage.STOPPED


class StopSignal:
    """First SIGTERM/SIGINT: finish the trial, then stop. Second: abandon the trial."""

    def __init__(self, who: str, forward: Callable[[int], None] | None = None):
        self.who, self.forward = who, forward
        self.requested: int | None = None
        self.in_trial = False
        self._event = threading.Event()

    def install(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        if self.forward is not None:
            self.forward(signum)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.requested is None:
            self.requested = signum
            self._event.set()
            then = "finishing the running trial first; " if self.in_trial else ""
            again = "press it" if signum == signal.SIGINT else "send it"
            print(
                f"[worker {self.who}] {name}: {then}stopping ({again} again to abandon the trial)",
                file=sys.stderr,
                flush=True,
            )
        elif self.in_trial:
            raise Stopped(signum)

    def sleep(self, seconds: float) -> None:
        self._event.wait(seconds)


def summary(trials, quota: Budget) -> str:
    """Finished, running and waiting trials, trials per worker, and the best so far."""
    states = Counter(t.state.name for t in trials)
    per_worker = Counter(
        t.user_attrs.get(WORKER_ATTR, "?") for t in trials if t.state.name in FINISHED
    )
    busy = {t.user_attrs.get(WORKER_ATTR) for t in trials if t.state.name == "RUNNING"}
    best = best_trial(trials)
    parts = [
        quota.describe(trials),
        f"{states['FAIL']} failed",
        f"{states['RUNNING']} running on {len(busy - {None})} worker(s)",
    ]
    if states["WAITING"]:
        parts.append(f"{states['WAITING']} queued")
    workers = ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items()))
    parts.append(f"finished per worker: {workers or 'none yet'}")
    if best is not None:
        parts.append(
            f"best val {best.value:.3f} (trial {best.number}, {strategy_of(best)}, "
            f"by {best.user_attrs.get(WORKER_ATTR, '?')})"
        )
    return "; ".join(parts)


def run_until_budget(
    study,
    objective: Callable,
    quota: Budget,
    *,
    who: str,
    stop: StopSignal,
    grace: float,
    callbacks: list | None = None,
    wait_for_running: bool = False,
    poll: float = 2.0,
    report_every: float = 15.0,
    watch: Callable[[], None] | None = None,
) -> int:
    """The loop every worker runs (the coordinator as worker 0, `thaw worker`): trials
    until the study holds its budget; returns how many this worker ran.

    `wait_for_running` (the coordinator): also wait until no trial is running or
    queued, so the finished study has none left. A worker without room waits too,
    since running trials may yet be pruned, fail or be lost.
    """
    started: list[int] = []  # the id of the trial this worker runs now
    labelled = _labelled(objective, who, stop, started)
    ran, last_note, last_reap = 0, 0.0, -grace
    while stop.requested is None:
        if watch is not None:
            watch()
        if time.monotonic() - last_reap >= grace / 4:  # a lost trial waits grace anyway
            last_reap = time.monotonic()
            _reap(study, grace, who)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state.name == "WAITING" for t in trials)
        running = any(t.state.name == "RUNNING" for t in trials)
        if quota.done(trials) and not waiting and not (wait_for_running and running):
            break
        if waiting or not quota.done(trials, pending=True):
            _run_one(study, labelled, quota, trials, waiting, who, started, callbacks)
            ran += 1
            continue
        if time.monotonic() - last_note >= report_every:
            print(
                f"[worker {who}] waiting for running trials: {summary(trials, quota)}",
                file=sys.stderr,
                flush=True,
            )
            last_note = time.monotonic()
        stop.sleep(poll)
    return ran


def _labelled(objective: Callable, who: str, stop: StopSignal, started: list[int]) -> Callable:
    """`objective` that first notes its trial's id in `started` and labels the trial with
    this worker; a second stop signal inside it records why the trial was abandoned."""

    def labelled(trial):
        started[:] = [trial._trial_id]
        trial.set_user_attr(WORKER_ATTR, who)
        stop.in_trial = True
        try:
            return objective(trial)
        except Stopped as stopped:
            trial.set_user_attr("fail_reason", stopped.reason)
            raise
        finally:
            stop.in_trial = False

    return labelled


def _reap(study, grace: float, who: str) -> None:
    """Fail the trials whose worker was lost, saying so for each (storage.reap_lost)."""
    for number in storage.reap_lost(study, grace):
        print(
            f"[worker {who}] trial {number} FAIL: {storage.LOST}; queued once more",
            file=sys.stderr,
            flush=True,
        )


def _run_one(
    study,
    labelled: Callable,
    quota: Budget,
    trials,
    waiting: bool,
    who: str,
    started: list[int],
    callbacks: list | None,
) -> None:
    """One trial: a queued one first, else a start-up trial of the strategy furthest
    behind (budget.py), else the sampler's choice. A trial failed as lost under this
    worker leaves it going; a database gone past the limit stops it, plainly."""
    strategy = quota.next_strategy(trials, pending=True)
    if strategy is not None and not waiting:
        study.enqueue_trial(quota.fixed_params(trials, strategy))  # start-up (budget.py)
    started.clear()
    try:
        study.optimize(labelled, n_trials=1, catch=(Exception,), callbacks=callbacks)
    except Exception as exc:
        if _lost_under_us(study, started):
            print(
                f"[worker {who}] the trial ran past its heartbeat and another worker "
                "failed it as lost; its retry is queued",
                file=sys.stderr,
                flush=True,
            )
        else:  # the database gone past the limit: say that, plainly
            outage = storage.unreachable_in(exc)
            if outage is None:
                raise
            raise outage from None


def _lost_under_us(study, started: list[int]) -> bool:
    """Another worker failed our running trial as lost (a heartbeat missed, say while
    the database restarted): Optuna then refuses to record its end, as
    UpdateFinishedTrialError or "Cannot tell a FAIL trial", depending on the moment."""
    if not started:
        return False
    try:
        trial = study._storage.get_trial(started[0])
    except Exception:  # the database still away: not ours to decide here
        return False
    return trial.state.name == "FAIL" and trial.user_attrs.get("fail_reason") == storage.LOST


# --- joining a study --------------------------------------------------------------------


def _differences(mine: dict, theirs: dict) -> list[str]:
    names = {
        "backbone_sha256": "the backbone file (models/<name>: `dvc pull`, or the same commit)",
        "manifest_sha256": "the data (data/manifest.json: `dvc pull`, or the same commit)",
        "search": "params.yaml's search section",
        "seed": "params.yaml's seed",
    }
    return [why for key, why in names.items() if mine.get(key) != theirs.get(key)]


def _active_rival(store, backbone: str, name: str) -> tuple[str, dict] | None:
    """Another study of this backbone with running trials: what a coordinator sweeps now."""
    from optuna.trial import TrialState

    for study in sorted(store.get_all_studies(), key=lambda s: -s._study_id):
        if study.study_name == name or not study.study_name.startswith(f"{backbone}-"):
            continue
        running = store.get_all_trials(
            study._study_id, deepcopy=False, states=(TrialState.RUNNING,)
        )
        if running:
            return study.study_name, study.user_attrs.get("inputs", {})
    return None


def join_study(
    connect: Callable,
    name: str,
    backbone: str,
    inputs: dict,
    code: str,
    *,
    sampler,
    pruner,
    who: str,
    wait: float,
    stop: StopSignal,
    poll: float = 2.0,
):
    """`thaw worker`'s first step: load the study the coordinator made, waiting for it;
    refuse one swept by other code, or a rival study made from other inputs. None when
    stopped while waiting.

    `connect()` opens the storage; it raises NoSchemaYet until the coordinator made
    the schema, which workers never do (many creating it at once race).
    """
    started, announced, store = time.monotonic(), False, None
    while stop.requested is None:
        store, study = _try_load(connect, store, name, sampler, pruner)
        if study is not None:
            _refuse_other_code(study, name, code, who)
            return study
        if store is not None and not _no_schema_now(store):
            _refuse_a_rival(store, name, backbone, inputs, who)
        if not announced:
            print(
                f"[worker {who}] waiting for study {name}: the "
                f"coordinator (`dvc repro`, stage sweep@{backbone}) creates it",
                file=sys.stderr,
                flush=True,
            )
            announced = True
        if time.monotonic() - started > wait:
            raise ThawError(
                f"worker {who}: study {name} did not appear within "
                f"{wait:.0f} s; start `dvc repro` (sweep@{backbone}) with the same storage"
            )
        stop.sleep(poll)
    return None


def _try_load(connect: Callable, store, name: str, sampler, pruner) -> tuple:
    """The storage (opened once it has a schema) and the study, or None for either that
    is not there yet."""
    import optuna

    study = None
    try:
        store = store or connect()
        study = optuna.load_study(study_name=name, storage=store, sampler=sampler, pruner=pruner)
    except KeyError:
        pass
    except Exception as exc:
        if not storage.no_schema(exc):
            raise
    return store, study


def _refuse_other_code(study, name: str, code: str, who: str) -> None:
    """A study swept by another pipeline/ digest: its trials and ours would not compare."""
    theirs = study.user_attrs.get("code")
    if theirs is not None and theirs != code:
        raise ThawError(
            f"worker {who}: study {name} is swept by other code (pipeline/ digest "
            f"{theirs}, here {code}); check out the coordinator's commit. Its trials "
            "would not be comparable."
        )


def _refuse_a_rival(store, name: str, backbone: str, inputs: dict, who: str) -> None:
    """Refuse to wait while the coordinator sweeps another study of this backbone: this
    machine's inputs differ from its; the error names what differs."""
    rival = _active_rival(store, backbone, name)
    if rival is not None:
        rival_name, theirs = rival
        differs = "; ".join(_differences(inputs, theirs)) or "its inputs"
        raise ThawError(
            f"worker {who}: this machine's inputs make study {name}, but the study "
            f"being swept is {rival_name}. Differs: {differs}. Use the coordinator's "
            "commit, params.yaml and `dvc pull`: trials from other inputs would belong "
            "to another study."
        )


def _no_schema_now(store) -> bool:
    try:
        store.get_all_studies()
    except Exception as exc:
        if storage.no_schema(exc):
            return True
        raise
    return False
