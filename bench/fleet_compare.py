"""Does a sharded fleet's warehouse equal a single-process run's? bench/fleet_loopback.sh calls this.

    python bench/fleet_compare.py --fleet-data-dir DIR --single-data-dir DIR

The fleet's catalog and data path come from PRMFORGE_CATALOG and PRMFORGE_DATA_PATH (as every
fleet machine has them); --fleet-data-dir is the folder of the machine that built the dataset.
The single run's warehouse is a local SQLite one in --single-data-dir.

Compared: every data table's rows (problems, quarantine, nodes, rollouts, step labels, verdicts,
consensus, preference pairs), leaving out `run_id` (a shard's run is not the single run) and
`policy` (each shard names its own server's endpoint), and dataset version 1's exported files
(TRL's train and test splits, the OpenRLHF form, the preference pairs), row for row. Prints one
line per table and `fleet equals single` at the end; exits 1 on the first difference listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

from schemas.config import WarehouseConfig
from warehouse.connection import connect, without_password
from warehouse.fingerprint import table_fingerprints

DATA_TABLES = ("problems", "quarantine", "nodes", "rollouts", "step_labels", "verdicts", "consensus",
               "preference_pairs")
EXPORTS = ("train.parquet", "test.parquet", "pairs.parquet", "openrlhf/train.parquet", "openrlhf/test.parquet")


def tables_and_dataset(warehouse: WarehouseConfig) -> tuple[dict, Path, list[str]]:
    connection = connect(warehouse, read_only=True)
    try:
        fingerprints = table_fingerprints(connection, leave_out=("run_id", "policy"), tables=DATA_TABLES)
        [(path,)] = connection.execute("SELECT path FROM datasets WHERE version = 1").fetchall()
        policies = [row[0] for row in connection.execute("SELECT DISTINCT policy FROM nodes ORDER BY 1").fetchall()]
    finally:
        connection.close()
    return fingerprints, Path(path), policies


def export_frame(path: Path) -> pl.DataFrame | None:
    if not path.exists():
        return None
    frame = pl.read_parquet(path).drop("run_id", strict=False)
    return frame.sort(frame.columns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet-data-dir", type=Path, required=True)
    parser.add_argument("--single-data-dir", type=Path, required=True)
    arguments = parser.parse_args()
    fleet = WarehouseConfig(data_dir=arguments.fleet_data_dir)  # catalog and data path from the environment
    single = WarehouseConfig(data_dir=arguments.single_data_dir, catalog="sqlite", data_path=None)
    if not fleet.catalog.startswith("postgres:"):
        print("PRMFORGE_CATALOG must name the fleet's PostgreSQL catalog", file=sys.stderr)
        return 2
    print(f"fleet catalog: {without_password(fleet.catalog)}")
    fleet_tables, fleet_dataset, fleet_policies = tables_and_dataset(fleet)
    single_tables, single_dataset, single_policies = tables_and_dataset(single)
    differences = []
    for table in DATA_TABLES:
        (rows, digest), (single_rows, single_digest) = fleet_tables[table], single_tables[table]
        same = (rows, digest) == (single_rows, single_digest)
        print(f"{table}: {rows} rows in the fleet, {single_rows} in the single run{'' if same else '  DIFFERENT'}")
        if not same:
            differences.append(table)
    for name in EXPORTS:
        fleet_frame, single_frame = export_frame(fleet_dataset / name), export_frame(single_dataset / name)
        same = (fleet_frame is None and single_frame is None) or (
            fleet_frame is not None and single_frame is not None and fleet_frame.equals(single_frame))
        height = 0 if fleet_frame is None else fleet_frame.height
        print(f"dataset v1 {name}: {height} rows{'' if same else '  DIFFERENT'}")
        if not same:
            differences.append(name)
    print(f"policies: fleet {', '.join(fleet_policies)}; single {', '.join(single_policies)}")
    if differences:
        print(f"fleet differs from single in {', '.join(differences)}")
        return 1
    print("fleet equals single")
    return 0


if __name__ == "__main__":
    sys.exit(main())
