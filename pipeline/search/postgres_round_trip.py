"""One round trip per trial read or write on PostgreSQL: what workers do many times a trial.

Optuna's RDBStorage works through ORM sessions: a write reads the trial, checks it
is not finished, looks for an existing row, inserts or updates and commits (three
to five round trips); reading a trial takes six queries, one per table. With 32
workers on a shared server those round trips, not the sampler, are the storage's
cost. Here, on PostgreSQL only (SQLite, one machine, keeps Optuna's methods):

- a write is one `INSERT … SELECT … FROM trials WHERE <not finished> ON CONFLICT …`:
  the same rows and the same rule. When it writes nothing (the trial is finished or
  unknown) Optuna's own method runs instead, so the error raised is Optuna's;
- a read is one query that gathers each trial's values, parameters, attributes and
  intermediate values as JSON, turned into the FrozenTrial Optuna would build
  (tests/search/test_postgres_round_trip.py compares the two on every kind of value).
"""

from __future__ import annotations

import functools
import json
from typing import Any

UNFINISHED = ("RUNNING", "WAITING")


@functools.cache
def _upsert(table: str, names: tuple[str, ...], keys: tuple[str, ...], update: bool):
    """INSERT a row into `table` if its trial exists and is not finished; on a key
    conflict, update it (`update`) or keep the row there, as Optuna does for a
    parameter. Built once per table (SQLAlchemy then caches its SQL too)."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.trial import TrialState
    from sqlalchemy.dialects.postgresql import insert

    target = models.BaseModel.metadata.tables[table]
    trial = models.TrialModel
    values = {k: sa.bindparam(k, type_=target.c[k].type) for k in names}
    source = sa.select(*(v.label(k) for k, v in values.items())).where(
        trial.trial_id == values["trial_id"],
        trial.state.in_([TrialState[s] for s in UNFINISHED]),
    )
    statement = insert(target).from_select(list(names), source)
    if update:
        updates = {k: statement.excluded[k] for k in names if k not in keys}
        statement = statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING, since SQLAlchemy keeps no rowcount for INSERT … SELECT
    return statement.returning(target.c.trial_id)


@functools.cache
def _beat():
    """The trial's heartbeat row, set to the server's clock."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from sqlalchemy.dialects.postgresql import insert

    statement = insert(models.TrialHeartbeatModel).values(
        trial_id=sa.bindparam("trial_id"), heartbeat=sa.func.now()
    )
    return statement.on_conflict_do_update(
        index_elements=["trial_id"], set_={"heartbeat": sa.func.now()}
    )


def _autocommit(engine):
    """A connection without BEGIN/COMMIT: one statement is atomic on its own, and the
    transaction's two extra round trips cost more than the statement."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _write(engine, table: str, keys: tuple[str, ...], row: dict[str, Any], update=True) -> bool:
    """Upsert `row` (see _upsert); True when it wrote a row."""
    with _autocommit(engine) as conn:
        statement = _upsert(table, tuple(row), keys, update)
        return conn.execute(statement, row).first() is not None


_TRIALS = """
SELECT t.trial_id, t.number, t.state::text, t.datetime_start, t.datetime_complete,
  (SELECT json_agg(json_build_array(v.objective, v.value, v.value_type::text))
     FROM trial_values v WHERE v.trial_id = t.trial_id),
  (SELECT json_agg(json_build_array(p.param_name, p.param_value, p.distribution_json)
                   ORDER BY p.param_id)
     FROM trial_params p WHERE p.trial_id = t.trial_id),
  (SELECT json_agg(json_build_array(a.key, a.value_json) ORDER BY a.trial_user_attribute_id)
     FROM trial_user_attributes a WHERE a.trial_id = t.trial_id),
  (SELECT json_agg(json_build_array(a.key, a.value_json) ORDER BY a.trial_system_attribute_id)
     FROM trial_system_attributes a WHERE a.trial_id = t.trial_id),
  (SELECT json_agg(json_build_array(i.step, i.intermediate_value,
                                    i.intermediate_value_type::text))
     FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id)
FROM trials t WHERE {where} ORDER BY t.trial_id
"""


@functools.lru_cache(maxsize=256)
def _distribution(text: str):
    """A parameter's distribution from its JSON: the same few strings on every trial
    of a study, parsed once (distributions are never changed in place)."""
    from optuna.distributions import json_to_distribution

    return json_to_distribution(text)


def _frozen(row):
    """The FrozenTrial RDBStorage._build_frozen_trial_from_trial_model makes of `row`."""
    from optuna.storages._rdb import models
    from optuna.trial import FrozenTrial, TrialState

    trial_id, number, state, start, complete, values, params, user, system, steps = row
    value_model, step_model = models.TrialValueModel, models.TrialIntermediateValueModel
    objectives = None
    if values:
        objectives = [0.0] * len(values)
        for objective, value, kind in values:
            objectives[objective] = value_model.stored_repr_to_value(
                value, value_model.TrialValueType[kind]
            )
    found = {name: _distribution(d) for name, _, d in params or []}
    return FrozenTrial(
        number=number,
        state=TrialState[state],
        value=None,
        values=objectives,
        datetime_start=start,
        datetime_complete=complete,
        params={name: found[name].to_external_repr(v) for name, v, _ in params or []},
        distributions=found,
        user_attrs={k: json.loads(v) for k, v in user or []},
        system_attrs={k: json.loads(v) for k, v in system or []},
        intermediate_values={
            step: step_model.stored_repr_to_intermediate_value(
                v, step_model.TrialIntermediateValueType[kind]
            )
            for step, v, kind in steps or []
        },
        trial_id=trial_id,
    )


class OneRoundTrip:
    """Mixed into RDBStorage before it; active only on a PostgreSQL engine."""

    engine: Any

    def _fast(self) -> bool:
        return self.engine.name == "postgresql"

    def _set_trial_param(self, trial_id, param_name, param_value_internal, distribution,
                         previous_distribution) -> None:  # fmt: skip
        from optuna import distributions

        # Without the study's earlier distribution (first use in this process), Optuna
        # looks it up; with it, the compatibility check needs no database.
        if self._fast() and previous_distribution is not None:
            distributions.check_distribution_compatibility(previous_distribution, distribution)
            row = {
                "trial_id": trial_id,
                "param_name": param_name,
                "param_value": param_value_internal,
                "distribution_json": distributions.distribution_to_json(distribution),
            }
            if _write(self.engine, "trial_params", ("trial_id", "param_name"), row, False):
                return
        super()._set_trial_param(  # type: ignore[misc]
            trial_id, param_name, param_value_internal, distribution, previous_distribution
        )

    def set_trial_intermediate_value(self, trial_id, step, intermediate_value) -> None:
        from optuna.storages._rdb import models

        if self._fast():
            model = models.TrialIntermediateValueModel
            value, kind = model.intermediate_value_to_stored_repr(intermediate_value)
            row = {
                "trial_id": trial_id,
                "step": step,
                "intermediate_value": value,
                "intermediate_value_type": kind,
            }
            if _write(self.engine, "trial_intermediate_values", ("trial_id", "step"), row):
                return
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)  # type: ignore[misc]

    def _set_attr(self, model, trial_id: int, key: str, value: Any) -> bool:
        row = {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        return self._fast() and _write(self.engine, model.__tablename__, ("trial_id", "key"), row)

    def set_trial_user_attr(self, trial_id, key, value) -> None:
        from optuna.storages._rdb import models

        if not self._set_attr(models.TrialUserAttributeModel, trial_id, key, value):
            super().set_trial_user_attr(trial_id, key, value)  # type: ignore[misc]

    def set_trial_system_attr(self, trial_id, key, value) -> None:
        from optuna.storages._rdb import models

        if not self._set_attr(models.TrialSystemAttributeModel, trial_id, key, value):
            super().set_trial_system_attr(trial_id, key, value)  # type: ignore[misc]

    def _read(self, where: str, **bind) -> list:
        import sqlalchemy as sa

        with _autocommit(self.engine) as conn:
            rows = conn.execute(sa.text(_TRIALS.format(where=where)), bind).all()
        return [_frozen(row) for row in rows]

    def get_trial(self, trial_id):
        if self._fast():
            found = self._read("t.trial_id = :id", id=trial_id)
            if found:
                return found[0]
        return super().get_trial(trial_id)  # type: ignore[misc]  # its KeyError when absent

    def _get_trials(self, study_id, states, included_trial_ids, trial_id_greater_than):
        if not self._fast():
            return super()._get_trials(  # type: ignore[misc]
                study_id, states, included_trial_ids, trial_id_greater_than
            )
        where, bind = ["t.study_id = :study"], {"study": study_id}
        if states is not None:
            where.append("t.state::text = ANY(:states)")
            bind["states"] = [s.name for s in states]
        included = [i for i in included_trial_ids if i <= trial_id_greater_than]
        if included and trial_id_greater_than > -1:
            where.append("(t.trial_id = ANY(:ids) OR t.trial_id > :after)")
            bind.update(ids=included, after=trial_id_greater_than)
        elif trial_id_greater_than > -1:
            where.append("t.trial_id > :after")
            bind["after"] = trial_id_greater_than
        trials = self._read(" AND ".join(where), **bind)
        if not trials:
            self.get_study_name_from_id(study_id)  # Optuna's KeyError for an unknown study
        return trials

    def record_heartbeat(self, trial_id) -> None:
        if not self._fast():
            return super().record_heartbeat(trial_id)  # type: ignore[misc]
        with _autocommit(self.engine) as conn:
            conn.execute(_beat(), {"trial_id": trial_id})
