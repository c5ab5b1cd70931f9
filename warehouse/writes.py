"""Idempotent writes: rows whose content-hash key is already stored are never written again."""

from __future__ import annotations

import duckdb
import polars as pl

from schemas.tables import Table


def insert_new(connection: duckdb.DuckDBPyConnection, table: Table, frame: pl.DataFrame) -> int:
    """Insert the rows of `frame` whose key the table does not hold yet. Returns how many."""
    if frame.is_empty():
        return 0
    frame = frame.select(table.column_names).cast(dict(table.polars_schema()))
    if table.key is not None:
        frame = frame.unique(subset=[table.key], keep="first", maintain_order=True)
    columns = ", ".join(table.column_names)
    connection.register("incoming_rows", frame.to_arrow())
    try:
        if table.key is None:
            anti_join = "SELECT * FROM incoming_rows"
        else:
            anti_join = (
                f"SELECT incoming_rows.* FROM incoming_rows ANTI JOIN {table.name} AS stored "
                f"ON incoming_rows.{table.key} = stored.{table.key}"
            )
        before = connection.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
        connection.execute(f"INSERT INTO {table.name} ({columns}) {anti_join}")
        after = connection.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
    finally:
        connection.unregister("incoming_rows")
    return int(after - before)


def read_table(
    connection: duckdb.DuckDBPyConnection, table: Table, where: str = "", at_snapshot: int | None = None
) -> pl.DataFrame:
    """A table (optionally filtered) as a polars frame with the schema's exact types: as the open
    transaction sees it, or as committed at snapshot `at_snapshot` (DuckLake time travel)."""
    columns = ", ".join(table.column_names)
    at = "" if at_snapshot is None else f" AT (VERSION => {int(at_snapshot)})"
    sql = f"SELECT {columns} FROM {table.name}{at}" + (f" WHERE {where}" if where else "")
    arrow = connection.execute(sql).to_arrow_table()
    return pl.from_arrow(arrow).cast(dict(table.polars_schema()))
