"""A real PostgreSQL server for the test session: its own data folder and port, loopback only.

The server runs as ``nobody`` when the tests run as root (PostgreSQL refuses to run as root),
with no Unix socket, and is stopped when the session ends. ``make test`` installs PostgreSQL
(``apt-get install postgresql``) and sets ``TOMASULO_REQUIRE_POSTGRES=1``, so that a server that
cannot start fails the tests that need it instead of skipping them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The PostgreSQL role and database the tests connect as.
SUPERUSER = "postgres"


def required() -> bool:
    """Whether a PostgreSQL that cannot start is a failure (``make test``, CI) or a skip."""
    return os.environ.get("TOMASULO_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"


def unavailable(reason: str) -> None:
    """Fail (under ``make test`` and CI) or skip the test that needs PostgreSQL."""
    if required():
        pytest.fail(f"PostgreSQL is required here (TOMASULO_REQUIRE_POSTGRES=1 or CI) but {reason}")
    pytest.skip(f"PostgreSQL: {reason}")


def bindir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: ``url(dbname)`` is a SQLAlchemy URL for one of its databases."""

    bindir: Path
    folder: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.folder,
        )

    @classmethod
    def start(cls) -> PostgresServer:
        found = bindir()
        if found is None:
            unavailable("initdb/pg_ctl are not installed (apt-get install postgresql)")
            raise AssertionError("unreachable")
        folder = Path(tempfile.mkdtemp(prefix="tomasulo-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(folder, "nobody", "nogroup")
            as_user = ["runuser", "-u", "nobody", "--"]
        server = cls(found, folder, _free_port(), as_user)
        init = server._run(
            str(found / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        started = server._run(
            str(found / "pg_ctl"), "-D", str(server.data), "-l", str(folder / "log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        if started.returncode != 0:
            log = (folder / "log").read_text(errors="replace")[-800:] if (folder / "log").exists() else ""
            server.stop()
            unavailable(f"pg_ctl start failed: {started.stderr.strip()[-300:]} {log}")
        return server

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its URL."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        if self.data.exists():
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60
            )
        shutil.rmtree(self.folder, ignore_errors=True)
