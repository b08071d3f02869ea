"""Study storage URLs: which are accepted, and how they are printed without secrets.

Both params validation (config.py) and the storage itself (storage.py) need these, so
they live apart from either, importing nothing of Thaw's but its errors.
"""

from __future__ import annotations

import os

from pipeline.errors import ParamsError

ENV_VAR = "THAW_STORAGE"
DEFAULT = "default"
DRIVERS = {  # accepted URL schemes -> the SQLAlchemy driver they mean
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
PASSWORD_HELP = (
    "a password does not belong in params.yaml (it would be written to dvc.lock and git): "
    "give it to libpq instead (PGPASSWORD, ~/.pgpass or PGSERVICE), or put the whole URL in "
    f"the environment variable {ENV_VAR}, which overrides sweep.storage"
)


def check_url(url: str, *, password_allowed: bool = False) -> str:
    """`url` normalised to its driver, or ValueError saying what is accepted."""
    if url == DEFAULT:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"{mask(url)!r} is not a database URL; accepted: 'default' (SQLite under "
            "results/optuna/), 'sqlite:///path.db' or 'postgresql://user@host:5432/db'"
        ) from None
    driver = DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"unsupported database {parsed.drivername!r} in {mask(url)!r}; accepted: "
            "'sqlite' (one machine) or 'postgresql' / 'postgresql+psycopg' (psycopg 3, "
            "installed with Thaw; plain 'postgresql' means this driver)"
        )
    has_password = bool(parsed.password) or "password" in parsed.query
    if has_password and not password_allowed:
        raise ValueError(PASSWORD_HELP)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def mask(url: str) -> str:
    """The URL fit to print or write to a file: no password, in the netloc or the query."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a URL: nothing to hide, but never echo something odd in full
        return url if "@" not in url else "<unparsable storage URL>"
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def env_url() -> str | None:
    """`THAW_STORAGE`, checked (a password is allowed there), or None when unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return None
    try:
        return check_url(value, password_allowed=True)
    except ValueError as exc:
        raise ParamsError(f"environment variable {ENV_VAR} = {mask(value)!r}: {exc}") from None
