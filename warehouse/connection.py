"""Open the DuckLake warehouse: load the extensions shipped as pip packages, attach the catalog."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from schemas.config import WarehouseConfig

LAKE = "lake"  # the attached catalog's name inside every connection


class WarehouseError(RuntimeError):
    """A warehouse problem the user can fix; its message is one line that says what to do."""


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
        probe = data_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise WarehouseError(
            f"cannot write to the data directory {data_dir}: {error.strerror or error}"
        ) from None


def connect(config: WarehouseConfig, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the warehouse attached as `lake` and selected; migrated unless read-only."""
    _check_data_dir(config, read_only)
    target, catalog_extension = _attach_target(config)
    connection = duckdb.connect()
    try:
        connection.execute(f"LOAD '{_extension_file('duckdb_extension_ducklake', 'ducklake')}'")
        if catalog_extension:
            package, name = _CATALOG_EXTENSIONS[catalog_extension]
            connection.execute(f"LOAD '{_extension_file(package, name)}'")
        options = [f"DATA_PATH '{config.lake_path}'"]
        if read_only:
            options.append("READ_ONLY")
        connection.execute(f"ATTACH '{target}' AS {LAKE} ({', '.join(options)})")
        connection.execute(f"USE {LAKE}")
    except duckdb.Error as error:
        connection.close()
        first_line = str(error).strip().splitlines()[0]
        raise WarehouseError(f"cannot open the warehouse catalog ({config.catalog}): {first_line}") from None
    if not read_only:
        from warehouse.migrations import migrate

        migrate(connection)
    return connection


def commit(connection: duckdb.DuckDBPyConnection, message: str) -> None:
    """Commit the open transaction as one DuckLake snapshot whose message names the run."""
    connection.execute(
        f"CALL {LAKE}.set_commit_message('prmforge', ?)", [message]
    )
    connection.execute("COMMIT")


def current_snapshot(connection: duckdb.DuckDBPyConnection) -> int:
    return int(connection.execute(f"SELECT id FROM {LAKE}.current_snapshot()").fetchone()[0])
