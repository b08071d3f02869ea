"""The one-round-trip reads and writes (pipeline/search/postgres_round_trip.py) against
Optuna's own, on a real PostgreSQL: the same trials come back, the same rows are written,
the same errors are raised. Also: the shared view of running trials, and the idle-only ping."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from pipeline.search import storage

SPACE = {
    "lr": FloatDistribution(1e-5, 1.0, log=True),
    "share": FloatDistribution(0.0, 1.0, step=0.05),
    "units": IntDistribution(1, 512, log=True),
    "layers": IntDistribution(0, 9, step=3),
    "kind": CategoricalDistribution([None, True, "surgical", 2.5, 7]),
}


def plain(url: str):
    """Optuna's RDBStorage, none of Thaw's changes."""
    return optuna.storages.RDBStorage(url)


def comparable(trial) -> dict:
    """FrozenTrial's fields with NaN made equal to itself."""

    def fix(v):
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return {k: fix(v) for k, v in vars(trial).items()}


def fill(study) -> None:
    """Every state and every kind of value a trial can hold."""
    for i, value in enumerate([0.25, float("inf"), float("-inf"), 1e-300, 123456.789]):
        params = {
            "lr": 10 ** -(i + 1),
            "share": 0.05 * i,
            "units": 2**i,
            "layers": 3 * (i % 4),
            "kind": SPACE["kind"].choices[i],
        }
        study.add_trial(
            optuna.create_trial(
                value=value,
                params=params,
                distributions=SPACE,
                user_attrs={"plan": {"frozen": [1, 2], "note": "ü"}, "none": None, "i": i},
                system_attrs={"fixed_params": {"kind": params["kind"]}},
                intermediate_values={0: 0.1, 1: float("nan"), 2: float("inf"), 3: -math.inf},
            )
        )
    study.add_trial(
        optuna.create_trial(
            state=TrialState.PRUNED, params={"lr": 0.5}, distributions={"lr": SPACE["lr"]},
            intermediate_values={0: 0.3},
        )
    )  # fmt: skip
    study.add_trial(optuna.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "x"}))
    running = study.ask({"lr": SPACE["lr"]})
    running.set_user_attr("worker", "host:1")
    running.report(0.5, 0)
    study.enqueue_trial({"kind": "surgical"})  # after the ask, or the ask would take it


def test_reads_give_the_trials_optuna_builds(db):
    ref = plain(db)
    study = optuna.create_study(study_name="s", storage=ref)
    fill(study)
    fast = storage.open_storage(db, create=False)._backend
    sid = study._study_id
    trials = ref.get_all_trials(sid, deepcopy=False)
    assert len(trials) == 9 and {t.state for t in trials} == set(TrialState)
    ids = {t._trial_id for t in trials}

    for states in (None, (TrialState.RUNNING, TrialState.WAITING), (TrialState.COMPLETE,)):
        for included, after in ((set(), -1), ({min(ids), min(ids) + 2}, min(ids) + 4)):
            mine = fast._get_trials(sid, states, included, after)
            theirs = ref._get_trials(sid, states, included, after)
            assert [comparable(t) for t in mine] == [comparable(t) for t in theirs]
            assert mine  # every combination finds something to compare
    for trial_id in ids:
        assert comparable(fast.get_trial(trial_id)) == comparable(ref.get_trial(trial_id))
    with pytest.raises(KeyError):
        fast.get_trial(max(ids) + 100)
    with pytest.raises(KeyError):
        fast._get_trials(sid + 100, None, set(), -1)


def writes(store, study_id: int) -> None:
    """Two trials written through `store`: every write kind, overwrites included."""
    for i in range(2):
        trial_id = store.create_new_trial(study_id)
        for name, dist in SPACE.items():  # the second trial passes the earlier distribution
            store.set_trial_param(trial_id, name, dist.to_internal_repr(dist.low if hasattr(
                dist, "low") else dist.choices[i]), dist)  # fmt: skip
        for step, value in enumerate([0.1, float("nan"), float("inf"), 0.4]):
            store.set_trial_intermediate_value(trial_id, step, value)
        store.set_trial_intermediate_value(trial_id, 0, 0.2)  # overwrite
        store.set_trial_user_attr(trial_id, "plan", {"a": [1]})
        store.set_trial_user_attr(trial_id, "plan", {"a": [2]})  # overwrite
        store.set_trial_system_attr(trial_id, "k", None)
        store.record_heartbeat(trial_id)
        store.record_heartbeat(trial_id)
        store.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5 + i])


def test_writes_leave_the_rows_optuna_writes(db, pg):
    ref = plain(db)
    ref_id = optuna.create_study(study_name="ref", storage=ref)._study_id
    fast = storage.open_storage(db, create=False)  # through Optuna's cache, as workers do
    fast_id = optuna.create_study(study_name="fast", storage=fast)._study_id
    writes(optuna.storages.get_storage(ref), ref_id)
    writes(fast, fast_id)

    def stored(study_id):  # read back by Optuna itself; ids and times differ
        return [
            {k: v for k, v in comparable(t).items()
             if k not in ("_trial_id", "_datetime_start", "datetime_complete")}
            for t in ref.get_all_trials(study_id)
        ]  # fmt: skip

    assert stored(fast_id) == stored(ref_id)
    beats = pg.sql("SELECT count(*) FROM trial_heartbeats", make_url(db).database)
    assert beats == [(4,)]  # one row per trial, updated in place


@pytest.mark.parametrize("write", ["param", "step", "user", "system"])
def test_writes_to_a_finished_or_unknown_trial_raise_optunas_errors(db, write):
    fast = storage.open_storage(db)
    study = optuna.create_study(storage=fast)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    finished = study.trials[-1]._trial_id
    backend = fast._backend
    calls = {
        "param": lambda i: backend._set_trial_param(
            i, "x", 0.5, FloatDistribution(0, 1), FloatDistribution(0, 1)
        ),  # fmt: skip
        "step": lambda i: backend.set_trial_intermediate_value(i, 0, 0.5),
        "user": lambda i: backend.set_trial_user_attr(i, "k", 1),
        "system": lambda i: backend.set_trial_system_attr(i, "k", 1),
    }
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        calls[write](finished)
    with pytest.raises(KeyError):
        calls[write](finished + 100)
    assert study.trials[-1].user_attrs == {} and study.trials[-1].intermediate_values == {}


def test_an_idle_connection_the_server_dropped_is_replaced_silently(db, pg, capsys):
    import time

    fast = storage.open_storage(db)
    study = optuna.create_study(storage=fast)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    name = make_url(db).database
    killed = pg.sql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    assert killed  # the pool's connection was open, and is now cut
    time.sleep(storage.PING_AFTER + 0.2)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(study.trials) == 2
    assert "unreachable" not in capsys.readouterr().err  # the ping replaced it: no outage
