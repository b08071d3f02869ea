"""Where studies live: storage URLs, their secrets, and a connection that survives a restart.

One machine: a SQLite file per backbone (`sweep.storage: default`). Many machines:
PostgreSQL through psycopg 3, the storage Optuna documents for distributed runs,
with heartbeats so a dead worker's trial is failed and retried.

- A URL in params.yaml carries no password: it would land in dvc.lock and in git.
  The password goes to libpq (`PGPASSWORD`, `~/.pgpass`, `PGSERVICE`) or the whole
  URL to `THAW_STORAGE`, which overrides `sweep.storage`. Every URL printed or
  written goes through `mask()`.
- No connection is held across a trial (closed after 2 s unused: the equivalent of
  NullPool, at most two per worker with the heartbeat thread), and one that sat
  unused is pinged before it is used again.
- A call that cannot reach the database is retried with back-off for up to
  `OUTAGE_LIMIT` seconds (a server restart), then fails with the masked URL.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import time
import warnings
from datetime import datetime, timedelta, timezone

from pipeline.errors import ThawError
from pipeline.paths import STUDIES_DIR
from pipeline.search.urls import DEFAULT, check_url, env_url, mask

OUTAGE_LIMIT = 60.0  # seconds a worker waits for the database to come back
LOST = "worker lost (no heartbeat)"
STOPPED = "stopped"  # a second SIGTERM abandoned the trial
INTERRUPTED = "interrupted"  # a second Ctrl-C (SIGINT) did


class StorageUnreachable(ThawError):
    """The database stayed unreachable past OUTAGE_LIMIT."""


def _chain(exc: BaseException | None, limit: int = 16):
    """`exc` and what caused it (or was being handled when it was raised), innermost last."""
    while exc is not None and limit:
        yield exc
        exc, limit = exc.__cause__ or exc.__context__, limit - 1


def unreachable_in(exc: BaseException | None) -> StorageUnreachable | None:
    """The StorageUnreachable behind `exc`, if any: Optuna may wrap it in its own error
    (or, past a failed tell, an UnboundLocalError of its own) on the way out."""
    return next((e for e in _chain(exc) if isinstance(e, StorageUnreachable)), None)


class NoSchemaYet(ThawError):
    """The database has no Optuna tables: the coordinator has not created a study yet."""


def no_schema(exc: BaseException | None) -> bool:
    """True when `exc` (or its cause) says Optuna's tables do not exist."""
    from sqlalchemy import exc as sa_exc

    return any(
        isinstance(e, NoSchemaYet | sa_exc.ProgrammingError) or "no such table" in str(e)
        for e in _chain(exc)
    )


def url_for(storage: str, backbone: str) -> str:
    """The URL a backbone's study lives at: `THAW_STORAGE`, else `sweep.storage`.

    'default' is one SQLite file per backbone, so DVC stages never share an output.
    """
    return location(env_url() or check_url(storage), backbone)


def location(url: str, backbone: str) -> str:
    """A checked URL as the study's: 'default' is the backbone's own SQLite file."""
    if url == DEFAULT:
        path = STUDIES_DIR / backbone / "study.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    return url


# --- a storage that rides out a restart -------------------------------------------------


def _is_disconnect(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database could not be reached."""
    from sqlalchemy import exc as sa_exc

    for e in _chain(exc):
        if "no such table" in str(e):  # SQLite's word for a missing schema: not an outage
            return False
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
    return False


class _Outage:
    """Shared by a storage's threads: when the database was first missed, and messages."""

    def __init__(self, url: str, limit: float):
        self.url, self.limit = mask(url), limit
        self.since: float | None = None
        self.lock = threading.Lock()

    def failed(self, exc: BaseException) -> float:
        """Record a failed call; the seconds left to retry. Past the limit, raise
        StorageUnreachable naming the masked URL."""
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
                print(
                    f"[storage] {self.url} unreachable ({type(exc).__name__}); retrying for up "
                    f"to {self.limit:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            down = time.monotonic() - self.since
        if down >= self.limit:
            raise StorageUnreachable(
                f"the study storage {self.url} has been unreachable for {down:.0f} s "
                f"({_first_line(_root(exc))}); every finished trial is kept there: start "
                "this again when the database is back and it resumes"
            ) from exc
        return self.limit - down

    def recovered(self) -> None:
        with self.lock:
            if self.since is not None:
                print(
                    f"[storage] {self.url} reachable again after "
                    f"{time.monotonic() - self.since:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            self.since = None


_depth = threading.local()


def _resilient(method):
    """Retry `method` with back-off while the database is unreachable, up to the limit."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        import optuna

        if getattr(_depth, "n", 0):  # an inner call: the outermost one retries
            return method(self, *args, **kwargs)
        _depth.n = 1
        try:
            attempt = 0
            while True:
                try:
                    result = method(self, *args, **kwargs)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # the attempt the connection dropped on had committed after all
                    if attempt and method.__name__ == "set_trial_state_values":
                        return True
                    raise
                except Exception as exc:
                    if not _is_disconnect(exc):
                        raise
                    left = self._outage.failed(exc)
                    attempt += 1
                    time.sleep(min(0.25 * 2**attempt, 8.0, left + 0.1))
                    continue
                if attempt:
                    self._outage.recovered()
                return result
        finally:
            _depth.n = 0

    return call


_PLUMBING = {  # RDBStorage methods that never touch the database, or set it up
    "__init__", "__getstate__", "__setstate__", "remove_session", "get_heartbeat_interval",
    "get_heartbeat_stale_trial_callback", "_fill_storage_url_template",
    "_set_default_engine_kwargs_for_mysql", "_get_stale_trial_ids",
}  # fmt: skip


@functools.cache
def _storage_class():
    """RDBStorage whose database calls retry through an outage (built on first use:
    importing Optuna is slow, and `thaw check` does not need it)."""
    from optuna.storages import RDBStorage

    from pipeline.search.postgres_round_trip import OneRoundTrip

    class ResilientStorage(OneRoundTrip, RDBStorage):
        _outage: _Outage

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            # Optuna's own fail_stale_trials (run before each trial) finds nothing: Thaw
            # fails lost trials itself (reap_lost), recording why, and retries them once.
            return []

        def lost_trial_ids(self, study_id: int, grace: float) -> list[int]:
            """Running trials whose last heartbeat (or, with none yet, start) is older than
            `grace`, in one query (reap_lost)."""
            import sqlalchemy
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session
            from optuna.trial import TrialState

            trial, beat = models.TrialModel, models.TrialHeartbeatModel
            with _create_scoped_session(self.scoped_session) as session:
                now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
                rows = (
                    session.query(trial.trial_id, trial._datetime_start_utc, beat.heartbeat)
                    .outerjoin(beat, beat.trial_id == trial.trial_id)
                    .filter(trial.study_id == study_id, trial.state == TrialState.RUNNING)
                    .all()
                )
            # A beat is on the database's clock; a start (naive UTC) on the worker's.
            limit = timedelta(seconds=grace)
            local_now = datetime.now(timezone.utc).replace(tzinfo=None)
            return [
                i
                for i, start, last in rows
                if (last is not None and now - last > limit)
                or (last is None and start is not None and local_now - start > limit)
            ]

    for name, member in [*vars(RDBStorage).items(), ("lost_trial_ids", None)]:
        static = isinstance(member, (staticmethod, classmethod))
        if name in _PLUMBING or name.startswith("__") or static:
            continue
        if callable(member) or member is None:  # the method as resolved: the fast one first
            setattr(ResilientStorage, name, _resilient(getattr(ResilientStorage, name)))
    return ResilientStorage


SNAPSHOT_SECONDS = 1.0  # how stale a view of other workers' running trials may be


@functools.cache
def _store_class():
    """Optuna's trial cache with one change: running trials are re-read at most every
    SNAPSHOT_SECONDS, and at once after this process finishes a trial.

    Optuna's cache keeps finished trials (they never change) but re-reads every
    running trial on each read, and TPE's constant liar reads once per suggested
    parameter: with W workers, five loads of W trials for every trial asked. The
    suggestions of one trial now share one view; a second-old view of other workers'
    trials changes nothing the liar or the budget decide (it is the same as asking a
    second earlier).
    """
    from optuna.storages._cached_storage import _CachedStorage

    class StudyStore(_CachedStorage):
        def __init__(self, backend, fresh: float = SNAPSHOT_SECONDS):
            super().__init__(backend)
            self._fresh = fresh
            self._read_at: dict[int, float] = {}

        def __getattr__(self, name: str):  # engine, lost_trial_ids, ...: the backend's
            try:
                backend = self.__dict__["_backend"]
            except KeyError:
                raise AttributeError(name) from None
            return getattr(backend, name)

        def expire(self) -> None:
            self._read_at.clear()

        def _read_trials_from_remote_storage(self, study_id: int) -> None:
            now = time.monotonic()
            if now - self._read_at.get(study_id, -self._fresh) < self._fresh:
                return
            super()._read_trials_from_remote_storage(study_id)
            self._read_at[study_id] = now

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except StorageUnreachable:
                pass  # the heartbeat thread's: the trial's own calls report the outage

        def set_trial_state_values(self, trial_id, state, values=None) -> bool:
            changed = super().set_trial_state_values(trial_id, state, values)
            if state.is_finished():
                self.expire()  # this worker's next decision sees its own trial finished
            return changed

    return StudyStore


def open_storage(
    url: str,
    *,
    create: bool = True,
    heartbeat: int = 30,
    grace: int = 120,
    outage_limit: float = OUTAGE_LIMIT,
):
    """Optuna RDB storage at `url`, with heartbeats.

    `create`: make the schema if missing (the coordinator, once). Workers pass False
    and do not make tables, but Optuna still stamps its version rows and alembic table
    on open: a worker that opens while the coordinator is stamping them races it
    (UniqueViolation), and retries like the coordinator does.
    """
    import optuna

    cls = _storage_class()
    outage = _Outage(url, outage_limit)
    with warnings.catch_warnings():  # heartbeats are "experimental", stable since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        races = 0
        while True:
            try:
                storage = cls(
                    url,
                    engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    skip_table_creation=not create,
                    skip_compatibility_check=not create,
                )
                break
            except Exception as exc:
                if not create and no_schema(exc):
                    raise NoSchemaYet(f"no study storage schema at {mask(url)} yet") from exc
                if _is_disconnect(exc):
                    time.sleep(min(2.0, max(0.1, outage.failed(exc))))
                    continue
                if _is_schema_race(exc) and races < 20:
                    races += 1
                    time.sleep(0.5)  # another process made the schema meanwhile: use it
                    continue
                raise ThawError(
                    f"study storage {mask(url)!r} could not be opened ({type(exc).__name__}: "
                    f"{_first_line(exc)}). Use 'default' (SQLite under results/optuna/) or a "
                    "reachable PostgreSQL URL (docs/scaling-out.md)."
                ) from exc
    storage._outage = outage
    outage.recovered()
    _ping_when_idle(storage.engine)
    _close_when_idle(storage.engine)
    return _store_class()(storage)


# Two connections at most (the worker and its heartbeat thread); see _ping_when_idle.
_ENGINE_KWARGS = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 120}
IDLE_SECONDS = 2.0


def _engine_kwargs(url: str) -> dict:
    """The pool, and on PostgreSQL each connection named after its process: in
    pg_stat_activity, `application_name` says which worker (host:pid) holds it."""
    if not url.startswith("postgresql"):
        return dict(_ENGINE_KWARGS)
    name = f"thaw {socket.gethostname()}:{os.getpid()}"[:63]  # PostgreSQL's limit
    return {**_ENGINE_KWARGS, "connect_args": {"application_name": name}}


PING_AFTER = 0.5  # seconds unused after which a connection is pinged before its next use


def _ping_when_idle(engine, after: float = PING_AFTER) -> None:
    """Ping a connection before use when it has sat unused for `after` seconds, so one
    the server or a firewall dropped is replaced instead of failing a call.

    SQLAlchemy's pool_pre_ping pings before every use: a round trip per storage call,
    a tenth of a trial's storage time here. A connection that answered a call a moment
    ago needs none; should it drop all the same, the call is retried (_resilient).
    """
    from sqlalchemy import event
    from sqlalchemy import exc as sa_exc

    def used(_dbapi, record, *_) -> None:
        record.info["used"] = time.monotonic()

    def checkout(dbapi, record, _proxy) -> None:
        if time.monotonic() - record.info.get("used", 0.0) > after:
            try:
                engine.dialect.do_ping(dbapi)
            except Exception as exc:  # the pool replaces it and checks out another
                raise sa_exc.DisconnectionError(str(exc)) from exc

    event.listen(engine, "connect", used)
    event.listen(engine, "checkin", used)
    event.listen(engine, "checkout", checkout)


def _close_when_idle(engine, idle: float = IDLE_SECONDS) -> None:
    """Close the pool's connections once no call has used them for `idle` seconds.

    A trial's bursts of calls (ask and suggestions, an epoch's report, tell) share a
    connection, but none stays open across the minutes of training in between: the
    equivalent of NullPool for a long trial, without a new connection per call (about
    20 per trial, 1.7 ms each on a local socket, more across a network).
    """
    from sqlalchemy import event

    last_used = [time.monotonic()]
    event.listen(engine, "checkin", lambda *_: last_used.__setitem__(0, time.monotonic()))

    def closer() -> None:
        while True:
            time.sleep(idle / 2)
            pool = engine.pool
            if pool.checkedin() and not pool.checkedout():
                if time.monotonic() - last_used[0] > idle:
                    engine.dispose()

    threading.Thread(target=closer, name="thaw-idle-connections", daemon=True).start()


def _is_schema_race(exc: BaseException) -> bool:
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (sa_exc.IntegrityError, sa_exc.ProgrammingError))


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- lost trials ------------------------------------------------------------------------


def reap_lost(study, grace: float) -> list[int]:
    """Fail every running trial whose worker stopped beating (or, on this machine, whose
    process is gone: `dead_here`), with its reason, and
    queue one retry with the same parameters. Returns the failed trials' numbers.

    Run by every worker (every grace/4, between trials) and by the coordinator while
    it waits, so no trial stays RUNNING after its worker died, whether or not another
    trial starts. Two reapers racing on one trial: the state change succeeds once.
    """
    import optuna
    from optuna.trial import TrialState

    storage = study._storage
    lost_trial_ids = getattr(storage, "lost_trial_ids", None)  # Thaw's storage only
    if lost_trial_ids is None:
        return []
    failed = []
    lost = set(lost_trial_ids(study._study_id, grace)) | set(dead_here(study))
    for trial_id in sorted(lost):
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", LOST)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it, or its own worker finished it just now
    numbers = []
    for trial_id in failed:
        trial = storage.get_trial(trial_id)
        numbers.append(trial.number)
        retry(study, trial)
    return numbers


def dead_here(study) -> list[int]:
    """Running trials of a worker on this machine whose process is gone (a SIGKILLed
    coordinator): lost for certain, so they need not wait out the heartbeat's grace."""
    from optuna.trial import TrialState

    host, ids = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("worker", ""))
        name, _, pid = owner.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            ids.append(trial._trial_id)
    return ids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def retry(study, trial) -> None:
    """Queue `trial`'s parameters once more, unless it is itself a retry.

    The system attributes follow Optuna's RetryHeartbeatStaleTrialCallback, so its
    `retried_trial_number` reads them; the lost run's user attributes stay behind.
    """
    import optuna

    history = list(trial.system_attrs.get("retry_history", []))
    if history:  # already a retry: once is enough
        return
    study.add_trial(
        optuna.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={"retry_of": trial.number},
            system_attrs={"failed_trial": trial.number, "retry_history": [trial.number]},
        )
    )
