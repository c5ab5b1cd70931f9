"""A real PostgreSQL server for the DuckLake catalog: started on 127.0.0.1 for the session, never mocked."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

MISSING = "postgresql not installed (run .ci/run or apt-get install postgresql)"


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL installation's bin folder, if it holds initdb and pg_ctl."""
    folders = [Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]
    folders = [folder for folder in folders if (folder / "initdb").exists()]
    versions = sorted(folders, key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _as_postgres(*command: str) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root, so as root its tools run as the postgres OS user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)


def _checked(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        pytest.fail(f"{what} failed with exit code {result.returncode}: {output}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    port: int
    log: Path  # the server log: every lost commit race shows there as a duplicate-key ERROR
    _names = itertools.count(1)

    def dsn(self, database: str) -> str:
        return f"dbname={database} host=127.0.0.1 port={self.port} user=postgres"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database (named, or numbered); returns its libpq connection string."""
        name = name or f"prmforge_test_{next(self._names)}"
        _checked(_as_postgres(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", "postgres", name), f"createdb {name}")
        return self.dsn(name)


@pytest.fixture(scope="session")
def postgres_server():
    """A throwaway PostgreSQL instance (trust auth, 127.0.0.1 only), stopped and removed at the end."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING}: in CI the PostgreSQL tests must run for real")
        pytest.skip(MISSING)
    root = Path(tempfile.mkdtemp(prefix="prmforge-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        for folder in (root, sockets):
            shutil.chown(folder, "postgres")
    port = _free_port()
    started = False
    try:
        _checked(_as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                              "--encoding=UTF8", "--no-sync"), "initdb")
        # fsync off: the instance is thrown away, and tests should not wait on the disk.
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} "
                   "-c fsync=off")
        _checked(_as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
                              "-o", options, "-w", "-t", "60", "start"), "pg_ctl start")
        started = True
        yield PostgresServer(bin_dir, port, root / "server.log")
    finally:
        if started:
            _as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server) -> str:
    """A libpq connection string to a `prmforge` database on the session's PostgreSQL server."""
    return postgres_server.create_database("prmforge")


@pytest.fixture()
def fresh_postgres_dsn(postgres_server) -> str:
    """A libpq connection string to a new, empty database: one warehouse per test."""
    return postgres_server.create_database()
