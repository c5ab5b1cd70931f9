"""Open the DuckLake warehouse: load the extensions shipped as pip packages, attach the catalog."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import tempfile
import time
from pathlib import Path

import duckdb

from schemas.config import WarehouseConfig
from schemas.errors import UserError

LAKE = "lake"  # the attached catalog's name inside every connection


class WarehouseError(UserError, RuntimeError):
    """A warehouse problem the user can fix; its message is one line that says what to do."""


def without_password(conninfo: str) -> str:
    """A libpq connection string fit for a message.

    >>> without_password("host=db password=s3cret user=prm")
    'host=db password=... user=prm'
    >>> without_password("postgresql://prm:s3cret@db/prmforge")
    'postgresql://prm:...@db/prmforge'
    """
    conninfo = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1...", conninfo)
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1...@", conninfo)


def catalog_unreachable(conninfo: str, reason: str) -> WarehouseError:
    """The one line for a PostgreSQL catalog whose server does not answer."""
    return WarehouseError(f"cannot reach the PostgreSQL catalog ({without_password(conninfo)}): {reason} "
                          "(check PRMFORGE_CATALOG and that the server is up)")


def _extension_file(package: str, extension: str) -> str:
    """The extension binary a pip package carries: LOAD would otherwise try to download it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError(f"the Python package {package} is missing: run `make install`")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob(f"extensions/*/{extension}.duckdb_extension"))
    if not found:
        raise WarehouseError(f"{package} carries no {extension} extension: reinstall it")
    return str(found[-1])


def _attach_target(config: WarehouseConfig) -> tuple[str, str | None]:
    """The DuckLake ATTACH path and the extra extension its catalog needs."""
    if config.catalog == "duckdb":
        return f"ducklake:{config.data_dir / 'catalog.ducklake'}", None
    if config.catalog == "sqlite":
        return f"ducklake:sqlite:{config.data_dir / 'catalog.sqlite'}", "sqlite"
    return f"ducklake:postgres:{config.catalog.removeprefix('postgres:')}", "postgres"


_CATALOG_EXTENSIONS = {
    "sqlite": ("duckdb_extension_sqlite_scanner", "sqlite_scanner"),
    "postgres": ("duckdb_extension_postgres_scanner", "postgres_scanner"),
}
# A DATA_PATH on an object store goes through httpfs; its credentials are a DuckDB secret the
# machine holds (CREATE PERSISTENT SECRET), never a prmforge setting.
_OBJECT_STORE_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "r2://", "http://", "https://")


def _data_path_extension(config: WarehouseConfig) -> str | None:
    if not config.lake_path.startswith(_OBJECT_STORE_SCHEMES):
        return None
    if importlib.util.find_spec("duckdb_extension_httpfs") is None:
        raise WarehouseError(
            f"DATA_PATH {config.lake_path} is on an object store: install its DuckDB extension with "
            "`pip install duckdb-extension-httpfs==1.5.5`"
        )
    return _extension_file("duckdb_extension_httpfs", "httpfs")


def _check_data_dir(config: WarehouseConfig, read_only: bool) -> None:
    data_dir = config.data_dir
    if read_only:
        if not config.catalog.startswith("postgres:"):
            catalog_file = Path(_attach_target(config)[0].split(":")[-1])
            if not catalog_file.exists():
                raise WarehouseError(
                    f"no warehouse at {data_dir}: run `prmforge generate` first or set PRMFORGE_DATA_DIR"
                )
        return
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # A probe of its own: processes sharing the folder must not remove each other's.
        handle, probe = tempfile.mkstemp(prefix=".write-probe-", dir=data_dir)
        try:
            os.write(handle, b"ok")
        finally:
            os.close(handle)
            os.unlink(probe)
    except OSError as error:
        raise WarehouseError(
            f"cannot write to the data directory {data_dir}: {error.strerror or error}"
        ) from None


# A PostgreSQL catalog takes writers from many machines. DuckLake commits them optimistically and
# retries a commit that lost the race for the next snapshot id; its default of 10 retries ran out
# with six busy writers on one catalog, so writers there wait longer (up to ~2 minutes in all).
POSTGRES_RETRY_SETTINGS = {"ducklake_max_retry_count": 50, "ducklake_retry_wait_ms": 100, "ducklake_retry_backoff": 1.1}
# Workers that open a fresh catalog at once race to create DuckLake's metadata tables, then our
# tables: the loser sees one of these errors and simply opens again (nothing of it was committed).
_OPEN_RACE_MARKERS = ("Transaction conflict", "duplicate key value", "already exists")
_OPEN_ATTEMPTS = 8


class _OpenRace(Exception):
    """Another process created the same catalog tables first; opening again will succeed."""


def connect(config: WarehouseConfig, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the warehouse attached as `lake` and selected; migrated unless read-only."""
    _check_data_dir(config, read_only)
    shared = config.catalog.startswith("postgres:")
    for attempt in range(_OPEN_ATTEMPTS if shared else 1):
        try:
            return _open(config, read_only, shared)
        except _OpenRace as race:
            last_race = race
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.2)
    raise WarehouseError(f"cannot open the warehouse catalog ({without_password(config.catalog)}): {last_race}") from None


def _open(config: WarehouseConfig, read_only: bool, shared: bool) -> duckdb.DuckDBPyConnection:
    target, catalog_extension = _attach_target(config)
    extensions = [_extension_file("duckdb_extension_ducklake", "ducklake")]
    if catalog_extension:
        extensions.append(_extension_file(*_CATALOG_EXTENSIONS[catalog_extension]))
    data_path_extension = _data_path_extension(config)
    if data_path_extension:
        extensions.append(data_path_extension)
    connection = duckdb.connect()
    try:
        for extension in extensions:
            connection.execute(f"LOAD '{extension}'")
        if shared:
            for setting, value in POSTGRES_RETRY_SETTINGS.items():
                connection.execute(f"SET {setting} = {value}")
        options = [f"DATA_PATH '{config.lake_path}'"]
        if read_only:
            options.append("READ_ONLY")
        connection.execute(f"ATTACH '{target}' AS {LAKE} ({', '.join(options)})")
        connection.execute(f"USE {LAKE}")
    except duckdb.Error as error:
        connection.close()
        _raise_open_race(error, shared)
        first_line = str(error).strip().splitlines()[0]
        unreachable = re.search(r'Unable to connect to Postgres at ".*?": (.*)', first_line)
        if shared and unreachable:
            raise catalog_unreachable(config.catalog.removeprefix("postgres:"), unreachable.group(1)) from None
        if read_only and "creating a new DuckLake is explicitly disabled" in first_line:
            raise WarehouseError(f"no warehouse in the catalog ({without_password(config.catalog)}) yet: "
                                 "run `prmforge generate` first, or check PRMFORGE_CATALOG") from None
        if "does not match existing data path" in first_line:
            first_line += " (set PRMFORGE_DATA_PATH to the catalog's data path)"
        raise WarehouseError(f"cannot open the warehouse catalog ({without_password(config.catalog)}): {first_line}") from None
    if not read_only:
        from warehouse.migrations import migrate

        try:
            migrate(connection)
        except duckdb.Error as error:
            connection.close()
            _raise_open_race(error, shared)
            raise
    return connection


def _raise_open_race(error: duckdb.Error, shared: bool) -> None:
    if shared and any(marker in str(error) for marker in _OPEN_RACE_MARKERS):
        raise _OpenRace(str(error).strip().splitlines()[0]) from None


def commit(connection: duckdb.DuckDBPyConnection, message: str) -> None:
    """Commit the open transaction as one DuckLake snapshot whose message names the run."""
    connection.execute(
        f"CALL {LAKE}.set_commit_message('prmforge', ?)", [message]
    )
    connection.execute("COMMIT")


def rollback(connection: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction. A COMMIT that failed has ended it already; saying so again
    ("no transaction is active") would hide the error that matters."""
    try:
        connection.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass


def current_snapshot(connection: duckdb.DuckDBPyConnection) -> int:
    return int(connection.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])
