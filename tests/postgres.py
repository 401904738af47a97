"""A real PostgreSQL server for the tests that need one (team MLflow, the console database).

PostgreSQL refuses to run as root, so when the tests run as root the server is started as the
`postgres` user (`runuser`), with its data and socket folders owned by that user. It listens on
a free loopback port and is stopped when the test session ends. Use the `postgres` fixture
(registered in conftest.py) and `create_database` for a database of your own.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "tierwise"
PASSWORD = "tierwise-test"  # a loopback server that lives for one test session


@dataclass(frozen=True)
class Postgres:
    """A running server: where it listens and how to reach a database on it."""

    host: str
    port: int

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy/MLflow URL for a database on this server (`driver="postgresql"` for MLflow)."""
        return f"{driver}://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database owned by the test user; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD, dbname="postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def server_binaries() -> Path:
    """Debian keeps initdb/pg_ctl in a versioned folder, off PATH; the newest one installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: `make test` installs Debian's postgresql package")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_server_user(args: list[str]) -> list[str]:
    """Run a server command as `postgres` when we are root (PostgreSQL refuses root)."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Start a throwaway PostgreSQL server on 127.0.0.1 for this test session (per xdist worker)."""
    bin_dir = server_binaries()
    root = Path(tempfile.mkdtemp(prefix="tierwise-pg-"))
    data, sockets = root / "data", root / "socket"
    sockets.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for path in (sockets, pwfile):
            shutil.chown(path, "postgres")
    run = {"check": True, "capture_output": True, "text": True}
    subprocess.run(
        as_server_user(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "-A", "scram-sha-256"]
        ),
        **run,
    )
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        as_server_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
        ),
        **run,
    )
    try:
        yield Postgres("127.0.0.1", port)
    finally:
        subprocess.run(as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), **run)
        shutil.rmtree(root, ignore_errors=True)
