"""Read-only SQL for users, held by two locks that do not depend on each other.

1. The statement: exactly one SELECT (or an EXPLAIN of one), at most `MAX_SQL_CHARS` long, whose
   table functions are all on `READ_TABLE_FUNCTIONS`. COPY, EXPORT, ATTACH, INSTALL, LOAD, SET,
   PRAGMA, CALL, CREATE SECRET and everything else is refused before it reaches the engine, and so
   is a function that writes (`ducklake_cleanup_old_files`, `enable_logging`, ...) or runs SQL
   from a string (`query`, `sqlite_query`, `json_execute_serialized_sql`).
2. The engine: the lake is attached READ_ONLY; external access is off, with only the warehouse's
   own folders (its Parquet data path and its dataset exports) allowed; extensions cannot be
   installed or autoloaded; nothing spills to a temporary directory; and the configuration is
   locked, so no statement can undo any of it.

Either lock alone stops the writes seen so far (e.g. `EXPLAIN ANALYZE COPY ... TO '<lake file>'`
is a refused statement, and a COPY to a path outside the warehouse is refused by the engine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import duckdb

from schemas.config import WarehouseConfig
from warehouse.connection import WarehouseError, connect

MAX_SQL_CHARS = 100_000
_READ_STATEMENTS = {"SELECT", "EXPLAIN"}

# Table functions that only read. Paths given to the readers are confined by the engine to the
# warehouse's folders; anything not listed here (writers, maintenance, SQL-from-a-string) is refused.
READ_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "glob",
    "read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata",
    "parquet_kv_metadata", "parquet_full_metadata",
    "read_csv", "read_csv_auto", "sniff_csv", "read_text", "read_blob",
    "read_json", "read_json_auto", "read_json_objects", "read_json_objects_auto",
    "read_ndjson", "read_ndjson_auto", "read_ndjson_objects", "json_each", "json_tree",
    "histogram", "histogram_values", "summary", "icu_calendar_names", "pg_timezone_names",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies",
    "duckdb_extensions", "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_memory",
    "duckdb_optimizers", "duckdb_schemas", "duckdb_sequences", "duckdb_settings", "duckdb_tables",
    "duckdb_types", "duckdb_variables", "duckdb_views", "duckdb_temporary_files",
    "pragma_collations", "pragma_database_size", "pragma_metadata_info", "pragma_platform",
    "pragma_show", "pragma_storage_info", "pragma_table_info", "pragma_user_agent", "pragma_version",
    "ducklake_snapshots", "ducklake_current_snapshot", "ducklake_last_committed_snapshot",
    "ducklake_table_info", "ducklake_list_files", "ducklake_table_changes",
    "ducklake_table_insertions", "ducklake_table_deletions", "ducklake_options", "ducklake_settings",
})
# DuckLake's own read functions called through the catalog, e.g. `lake.snapshots()`.
READ_CATALOG_FUNCTIONS = frozenset({
    "snapshots", "current_snapshot", "last_committed_snapshot", "table_info", "list_files",
    "table_changes", "table_insertions", "table_deletions", "options", "settings",
})


class QueryFailed(WarehouseError):
    """A read-only query that the engine could not answer (a missing table, a type error)."""

    exit_code = 1


class QueryRefused(QueryFailed):
    """The statement could write, or reach outside the warehouse, so it is not run."""

    exit_code = 2


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _single_statement(sql: str) -> duckdb.Statement:
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"the query is {len(sql):,} characters long; the limit is {MAX_SQL_CHARS:,}")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryRefused(f"SQL syntax error: {_first_line(error)}") from None
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one SQL statement, got {len(statements)}")
    return statements[0]


def _explained(text: str) -> str:
    """The statement an EXPLAIN [ANALYZE] [(options)] wraps, comments skipped.

    >>> _explained("/* c */ EXPLAIN ANALYZE -- x\\n SELECT 1")
    'SELECT 1'
    >>> _explained("EXPLAIN (FORMAT json) SELECT 2")
    'SELECT 2'
    """
    tokens = [(offset, kind) for offset, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment]
    words = iter(tokens)
    next(words)  # EXPLAIN
    for offset, kind in words:
        word = text[offset:offset + 7].upper()
        if kind == duckdb.token_type.keyword and word.startswith("ANALYZE"):
            continue
        if text[offset] == "(":
            depth = 1
            for inner_offset, _ in words:
                depth += {"(": 1, ")": -1}.get(text[inner_offset], 0)
                if depth == 0:
                    break
            continue
        return text[offset:].strip()
    raise QueryRefused("EXPLAIN of nothing")


def _sources(tree: object) -> Iterator[tuple[str, str, str]]:
    """("function", schema, name) of every table function and ("table", schema, name) of every
    table named anywhere in a serialized parse tree."""
    if isinstance(tree, dict):
        if tree.get("type") == "TABLE_FUNCTION":
            function = tree.get("function") or {}
            yield "function", function.get("schema") or "", function.get("function_name", "")
        elif tree.get("type") == "BASE_TABLE":
            yield "table", tree.get("schema_name") or "", tree.get("table_name", "")
        for value in tree.values():
            yield from _sources(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _sources(value)


def _check_sources(query: str) -> None:
    parser = duckdb.connect()
    try:
        serialized = json.loads(parser.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
    except duckdb.Error as error:
        raise QueryRefused(f"cannot check this query: {_first_line(error)}") from None
    finally:
        parser.close()
    if serialized.get("error"):
        raise QueryRefused(f"cannot check this query: {serialized.get('error_message', 'unknown')}")
    for kind, schema, name in _sources(serialized):
        if kind == "table":
            # A quoted path used as a table is a file read DuckDB resolves by itself ('x.csv').
            if any(mark in name for mark in ("/", "\\", ":")):
                raise QueryRefused(f"'{name}' names a file as a table: read warehouse files with "
                                   "read_parquet(), read_csv() or read_json()")
            continue
        allowed = READ_CATALOG_FUNCTIONS if schema else READ_TABLE_FUNCTIONS
        if name.lower() not in allowed:
            shown = f"{schema}.{name}" if schema else name
            raise QueryRefused(f"the table function {shown}() is not on the read-only list")


def check_read_only(sql: str) -> str:
    """The one statement in `sql` if it only reads the warehouse; QueryRefused otherwise.

    >>> check_read_only("select count(*) from nodes")
    'select count(*) from nodes'
    >>> try:
    ...     check_read_only("EXPLAIN ANALYZE COPY (select 1) TO 'x.parquet'")
    ... except QueryRefused as refused:
    ...     print(refused)
    only read-only queries are allowed here, not COPY (inside EXPLAIN)
    """
    statement = _single_statement(sql)
    kind = statement.type.name
    if kind not in _READ_STATEMENTS:
        raise QueryRefused(f"only read-only queries are allowed here, not {kind}")
    if kind == "EXPLAIN":
        inner = _single_statement(_explained(statement.query))
        if inner.type.name != "SELECT":
            raise QueryRefused(f"only read-only queries are allowed here, not {inner.type.name} (inside EXPLAIN)")
        _check_sources(inner.query)
    else:
        _check_sources(statement.query)
    return statement.query


def readable_folders(config: WarehouseConfig) -> list[str]:
    """The folders a user's query may read: the lake's Parquet data and the dataset exports."""
    folders = [config.lake_path]
    if "://" not in config.lake_path:
        folders.append(os.path.abspath(config.lake_path) + os.sep)
    folders.append(os.path.abspath(config.datasets_dir) + os.sep)
    return folders


def lock_down(connection: duckdb.DuckDBPyConnection, config: WarehouseConfig) -> None:
    """DuckDB's own guards on a read-only connection; the last one makes them permanent for it."""
    connection.execute("SET temp_directory = ''")  # nothing spills to disk
    connection.execute("SET allowed_directories = ?", [readable_folders(config)])
    connection.execute("SET enable_external_access = false")
    connection.execute("SET autoinstall_known_extensions = false")
    connection.execute("SET autoload_known_extensions = false")
    connection.execute("SET allow_community_extensions = false")
    connection.execute("SET lock_configuration = true")


def run_query(config: WarehouseConfig, sql: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of a read-only query against the last committed state."""
    query = check_read_only(sql)
    connection = connect(config, read_only=True)
    try:
        lock_down(connection, config)
        result = connection.execute(query)
        columns = [description[0] for description in result.description or []]
        return columns, result.fetchall()
    except duckdb.PermissionException as error:
        raise QueryRefused(f"{_first_line(error)} (only the warehouse's own files can be read)") from None
    except duckdb.Error as error:
        raise QueryFailed(_first_line(error)) from None
    finally:
        connection.close()
