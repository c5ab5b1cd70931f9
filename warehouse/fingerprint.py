"""Content fingerprints of the warehouse: row counts and a hash of every table's rows.

Two warehouses built from the same inputs have equal fingerprints, whatever crashed or ran in
parallel on the way. Columns the schema marks volatile (when or where something ran) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from schemas.tables import ALL_TABLES


def table_fingerprints(connection: duckdb.DuckDBPyConnection, leave_out: Sequence[str] = (),
                       tables: Sequence[str] | None = None) -> dict[str, tuple[int, str]]:
    """(row count, content hash) per table, independent of row order and commit history.

    `leave_out` names more columns to ignore (e.g. `run_id` and `policy` when a sharded run is
    compared with a single one: their run ids and endpoints differ by construction); `tables`
    narrows the tables compared."""
    fingerprints: dict[str, tuple[int, str]] = {}
    existing = _existing_tables(connection)
    for table in ALL_TABLES:
        if tables is not None and table.name not in tables:
            continue
        if table.name not in existing:
            fingerprints[table.name] = (0, "")
            continue
        columns = [column.name for column in table.columns if not column.volatile and column.name not in leave_out]
        row_text = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), 'NULL')" for c in columns)
        count, digest = connection.execute(
            f"SELECT count(*), coalesce(md5(string_agg(row_hash, ',' ORDER BY row_hash)), '') "
            f"FROM (SELECT md5({row_text}) AS row_hash FROM {table.name})"
        ).fetchone()
        fingerprints[table.name] = (int(count), str(digest))
    return fingerprints


def duplicate_keys(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Per table, how many key values occur more than once (always 0 in a healthy warehouse)."""
    duplicates = {}
    existing = _existing_tables(connection)
    for table in ALL_TABLES:
        if table.key and table.name in existing:
            duplicates[table.name] = int(connection.execute(
                f"SELECT count(*) FROM (SELECT {table.key} FROM {table.name} GROUP BY 1 HAVING count(*) > 1)"
            ).fetchone()[0])
    return duplicates


def _existing_tables(connection: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables present: a run killed before its first migration committed leaves none."""
    return {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
