"""Read-only SQL for users: exactly one query, refused with a clear message otherwise."""

from __future__ import annotations

import duckdb

from schemas.config import WarehouseConfig
from warehouse.connection import WarehouseError, connect

_READ_STATEMENTS = {"SELECT", "EXPLAIN"}


class QueryRefused(WarehouseError):
    """The statement is not a single read-only query."""


def check_read_only(sql: str) -> str:
    """The one statement in `sql`, if it only reads; QueryRefused otherwise."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryRefused(f"SQL syntax error: {str(error).strip().splitlines()[0]}") from None
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one SQL statement, got {len(statements)}")
    statement = statements[0]
    kind = statement.type.name
    if kind not in _READ_STATEMENTS:
        raise QueryRefused(f"only read-only queries are allowed here, not {kind}")
    return statement.query


def run_query(config: WarehouseConfig, sql: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of a read-only query against the last committed state."""
    query = check_read_only(sql)
    connection = connect(config, read_only=True)
    try:
        result = connection.execute(query)
        columns = [description[0] for description in result.description or []]
        return columns, result.fetchall()
    except duckdb.Error as error:
        raise QueryRefused(str(error).strip().splitlines()[0]) from None
    finally:
        connection.close()
