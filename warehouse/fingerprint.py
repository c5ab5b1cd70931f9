"""Content fingerprints of the warehouse: row counts and a hash of every table's rows.

Two warehouses built from the same inputs have equal fingerprints, whatever crashed or ran in
parallel on the way. Columns the schema marks volatile (when or where something ran) are left out.
"""

from __future__ import annotations

import duckdb

from schemas.tables import ALL_TABLES


def table_fingerprints(connection: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    """(row count, content hash) per table, independent of row order and commit history."""
    fingerprints: dict[str, tuple[int, str]] = {}
    existing = _existing_tables(connection)
    for table in ALL_TABLES:
        if table.name not in existing:
            fingerprints[table.name] = (0, "")
            continue
        columns = [column.name for column in table.columns if not column.volatile]
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
