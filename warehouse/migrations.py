"""Bring a warehouse up to the tables and views in schemas/: add what is missing, never drop."""

from __future__ import annotations

import hashlib

import duckdb

from schemas.tables import ALL_TABLES
from warehouse.connection import LAKE, commit
from warehouse.views import VIEWS

_VIEW_MARKER = "prmforge_view_"


def _existing_columns(connection: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    rows = connection.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_catalog = ?",
        [LAKE],
    ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    return columns


def _view_fingerprint(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()[:12]


def _existing_view_fingerprints(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The fingerprint each view was created with, kept as the view's comment."""
    rows = connection.execute(
        "SELECT view_name, comment FROM duckdb_views() WHERE database_name = ?", [LAKE]
    ).fetchall()
    return {name: (comment or "") for name, comment in rows}


def pending_statements(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """The DDL that would bring this warehouse up to date; empty when it already is."""
    statements: list[str] = []
    columns = _existing_columns(connection)
    for table in ALL_TABLES:
        if table.name not in columns:
            statements.append(table.ddl())
            continue
        for column in table.columns:
            if column.name not in columns[table.name]:
                statements.append(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type}")
    views = _existing_view_fingerprints(connection)
    for name, sql in VIEWS.items():
        fingerprint = _VIEW_MARKER + _view_fingerprint(sql)
        if views.get(name) != fingerprint:
            statements.append(f"CREATE OR REPLACE VIEW {name} AS {sql}")
            statements.append(f"COMMENT ON VIEW {name} IS '{fingerprint}'")
    return statements


def migrate(connection: duckdb.DuckDBPyConnection) -> bool:
    """Apply pending DDL as one snapshot. Returns whether anything changed."""
    statements = pending_statements(connection)
    if not statements:
        return False
    connection.execute("BEGIN")
    for statement in statements:
        connection.execute(statement)
    commit(connection, "prmforge: migrate schema")
    return True
