"""`prmforge sql` is read-only for real: hostile statements are refused and no file changes.

Each statement below was written to write a file, read one outside the warehouse, change the
engine's guards, or hide a second statement. Every one must be refused (QueryRefused, exit code 2
through the console script), and the lake's files and catalog must be byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.config import WarehouseConfig
from schemas.tables import DATASETS, NODES, PROBLEMS
from warehouse.connection import commit, connect, current_snapshot
from warehouse.sql import MAX_SQL_CHARS, QueryFailed, QueryRefused, run_query
from warehouse.writes import insert_new

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
NODE_COUNT = 60


def _fill(config: WarehouseConfig) -> None:
    """Two snapshots of real rows, enough that DuckLake writes Parquet files, and one dataset row."""
    connection = connect(config)
    connection.execute("BEGIN")
    insert_new(connection, PROBLEMS, PROBLEMS.frame([{"problem_id": "p", "question": "Q?", "answer": "6",
                                                      "reference_steps": []}]))
    commit(connection, "run one: problems")
    first = current_snapshot(connection)
    connection.execute("BEGIN")
    insert_new(connection, NODES, NODES.frame([
        {"node_id": f"n{i}", "problem_id": "p", "parent_id": None, "depth": 1, "step_text": f"Step 1: {i} + 1 = {i + 1}",
         "is_terminal": False} for i in range(NODE_COUNT)
    ]))
    insert_new(connection, DATASETS, DATASETS.frame([{"dataset_id": "d1", "version": 1, "snapshot_id": first,
                                                      "labeler": "mc", "path": "x"}]))
    commit(connection, "run two: nodes")
    connection.close()


def _hostile(config: WarehouseConfig, outside: Path) -> list[str]:
    lake = config.lake_path
    lake_file = next(Path(lake).rglob("*.parquet"))
    catalog = config.data_dir / "catalog.sqlite"
    cache = config.data_dir / "cache" / "generations.sqlite"
    ducklake = sorted(Path(sys.prefix).rglob("ducklake.duckdb_extension"))[0]
    return [
        # writes hidden in EXPLAIN ANALYZE
        f"EXPLAIN ANALYZE COPY (select 42 as x) TO '{lake_file}' (FORMAT parquet)",
        f"explain analyze /* harmless */ copy nodes to '{outside}/nodes.csv'",
        f"EXPLAIN (FORMAT json) COPY (select 1) TO '{lake}/main/nodes/x.parquet'",
        "EXPLAIN ANALYZE INSERT INTO nodes SELECT * FROM nodes",
        "EXPLAIN ANALYZE DELETE FROM nodes",
        f"EXPLAIN ANALYZE -- a comment\n EXPORT DATABASE '{outside}/export'",
        # COPY and EXPORT DATABASE
        f"COPY nodes TO '{lake_file}' (FORMAT parquet)",
        f"COPY (select 1 as x) TO '{outside}/x.parquet'",
        f"COPY nodes FROM '{outside}/x.csv'",
        f"EXPORT DATABASE '{outside}/export'",
        f"EXPORT DATABASE lake TO '{lake}export'",
        # ATTACH, DETACH, INSTALL and LOAD
        f"ATTACH '{outside}/new.duckdb' AS other",
        "ATTACH ':memory:' AS scratch",
        f"ATTACH 'ducklake:sqlite:{catalog}' AS writable (DATA_PATH '{lake}')",
        "DETACH lake",
        "INSTALL httpfs",
        "FORCE INSTALL httpfs",
        "LOAD httpfs",
        f"LOAD '{ducklake}'",
        # SET, RESET, PRAGMA, CALL and CREATE SECRET
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET allowed_directories = ['/']",
        "PRAGMA enable_profiling",
        f"PRAGMA profiling_output = '{outside}/profile.json'",
        f"SET profiling_output = '{lake}profile.json'",
        "CALL ducklake_cleanup_old_files('lake', cleanup_all => true)",
        "CALL lake.set_commit_message('me', 'hello')",
        "CHECKPOINT lake",
        "CREATE SECRET leak (TYPE s3, KEY_ID 'a', SECRET 'b')",
        "CREATE PERSISTENT SECRET leak (TYPE s3, KEY_ID 'a', SECRET 'b')",
        # table functions on outside paths, and functions that write or run SQL from a string
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/root/*')",
        "SELECT * FROM '/etc/passwd'",
        f"SELECT * FROM read_blob('{cache}')",
        f"SELECT * FROM read_text('{lake}../../../../../../etc/hostname')",
        f"SELECT count(*) FROM read_parquet('{outside}/*.parquet')",
        "SELECT * FROM sqlite_query('__ducklake_metadata_lake', 'select * from ducklake_snapshot')",
        "SELECT * FROM ducklake_cleanup_old_files('lake', cleanup_all => true)",
        "SELECT * FROM ducklake_delete_orphaned_files('lake', cleanup_all => true)",
        "SELECT * FROM ducklake_expire_snapshots('lake', versions => [1])",
        "SELECT * FROM ducklake_merge_adjacent_files('lake')",
        "SELECT * FROM lake.merge_adjacent_files()",
        "SELECT * FROM query('select * from read_text(''/etc/hostname'')')",
        f"SELECT * FROM enable_logging(storage => 'file', storage_path => '{outside}/logs')",
        "SELECT * FROM (SELECT 1) t, LATERAL (SELECT * FROM checkpoint())",
        f"SELECT * FROM sqlite_attach('{outside}/x.db')",
        # comments and strings that hide a second statement
        f"select 1; copy nodes to '{lake_file}'",
        "select 1 /* ; */; drop table nodes",
        "select ';' as x; delete from nodes",
        "select 1 -- ;\n; insert into nodes select * from nodes",
        "select $$;$$ as x; drop table nodes",
        "select 'it''s'; update nodes set step_text = ''",
        # writes of every other kind
        "INSERT INTO nodes SELECT * FROM nodes",
        "UPDATE nodes SET step_text = ''",
        "DELETE FROM nodes",
        "DROP TABLE nodes",
        "CREATE TABLE scratch AS SELECT 1",
        "CREATE MACRO m() AS TABLE SELECT 1",
        "ALTER TABLE nodes RENAME TO gone",
        "VACUUM",
        "BEGIN TRANSACTION",
        "PREPARE p AS SELECT 1",
        "USE memory",
        # huge and deeply nested queries
        "select " + "+".join(["1"] * (MAX_SQL_CHARS // 2 + 10)),
        "select " + "(" * 20_000 + "1" + ")" * 20_000,
        "select * from " + "(select * from " * 3_000 + "nodes" + ") t" * 3_000,
        "select " + "+".join(["1"] * 20_000),
    ]


def _lake_hashes(config: WarehouseConfig) -> dict[str, str]:
    files = [path for path in Path(config.lake_path).rglob("*") if path.is_file()]
    files += [path for path in config.data_dir.glob("catalog.*") if path.is_file()]
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(files)}


@pytest.fixture(scope="module", params=["sqlite", "duckdb", "postgres"])
def filled(request, tmp_path_factory):
    """One warehouse per catalog kind for the module: nothing here may change it."""
    root = tmp_path_factory.mktemp(f"hostile-{request.param}")
    catalog = request.param
    if catalog == "postgres":
        catalog = "postgres:" + request.getfixturevalue("postgres_server").create_database()
    config = WarehouseConfig(data_dir=root / "wh", catalog=catalog,
                             data_path=f"{root / 'wh' / 'lake'}/")
    _fill(config)
    (config.data_dir / "cache").mkdir()
    (config.data_dir / "cache" / "generations.sqlite").write_bytes(b"the generation cache")
    outside = root / "outside"
    outside.mkdir()
    return config, outside


def test_the_corpus_is_large_and_every_statement_is_refused_with_nothing_changed(filled):
    config, outside = filled
    statements = _hostile(config, outside)
    assert len(statements) >= 40
    before = _lake_hashes(config)
    assert any(name.endswith(".parquet") for name in before), "the lake must hold Parquet files to protect"
    accepted = []
    for statement in statements:
        try:
            run_query(config, statement)
        except QueryRefused:
            continue
        accepted.append(statement[:120])
    assert accepted == []
    assert _lake_hashes(config) == before
    assert sorted(path.name for path in outside.iterdir()) == []
    assert run_query(config, "select count(*) from nodes") == (["count_star()"], [(NODE_COUNT,)])


LEGITIMATE = [
    # the README's examples, the views and time travel
    ("select count(*) from labeled_steps", [(NODE_COUNT,)]),
    ("select prefix, step_text, mc_q from labeled_steps where mc_q = 0 and depth > 1 limit 5", []),
    ("select count(*) from (select labeler, labels, rollouts, generated_tokens, policy_seconds_per_label "
     "from label_costs)", [(0,)]),
    ("select count(*) from (select source_file, source_row, reason from quarantine)", [(0,)]),
    ("select count(*) from (select run_id, stage, decision, reason from decisions order by created_at)", [(0,)]),
    ("select count(*) from (select run_id, decision, metric, compared_with, difference, difference_low, "
     "difference_high, problems from decisions where stage = 'promote')", [(0,)]),
    ("select count(*) from consensus_retention", [(0,)]),
    # reads a user may reasonably write
    ("select commit_message from lake.snapshots() order by snapshot_id desc limit 1", [("run two: nodes",)]),
    ("select count(*) > 0 from ducklake_snapshots('lake')", [(True,)]),
    ("EXPLAIN ANALYZE select count(*) from nodes", None),
    ("/* a comment */ select 'a;b' as x", [("a;b",)]),
    ("with t as (select depth from nodes) select max(depth) from t", [(1,)]),
    ("select count(*) from range(10)", [(10,)]),
    ("DESCRIBE nodes", None),
    ("SHOW TABLES", None),
    ("PRAGMA table_info('nodes')", None),
]


@pytest.mark.parametrize(("query", "expected"), LEGITIMATE, ids=[query[:40] for query, _ in LEGITIMATE])
def test_legitimate_reads_keep_working(filled, query, expected):
    config, _ = filled
    columns, rows = run_query(config, query)
    assert columns
    if expected is not None:
        assert rows == expected


def test_time_travel_to_a_dataset_snapshot(filled):
    config, _ = filled
    (snapshot,), = run_query(config, "select snapshot_id from datasets where version = 1")[1]
    assert run_query(config, f"select count(*) from nodes at (version => {snapshot})")[1] == [(0,)]
    assert run_query(config, f"select count(*) from problems at (version => {snapshot})")[1] == [(1,)]


def test_reading_the_lake_files_directly_is_allowed(filled):
    config, _ = filled
    _, rows = run_query(config, f"select count(*) from read_parquet('{config.lake_path}main/nodes/*.parquet')")
    assert rows == [(NODE_COUNT,)]


def test_a_query_error_is_not_a_refusal(filled):
    config, _ = filled
    with pytest.raises(QueryFailed, match="does not exist") as failure:
        run_query(config, "select * from no_such_table")
    assert not isinstance(failure.value, QueryRefused)


def _cli(config: WarehouseConfig, query: str) -> subprocess.CompletedProcess:
    return subprocess.run([PRMFORGE, "sql", "--data-dir", str(config.data_dir), "--format", "csv", query],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PRMFORGE_CATALOG": config.catalog,
                               "PRMFORGE_DATA_PATH": config.lake_path})


def test_console_script_refuses_with_one_line_and_exit_2(tmp_path):
    config = WarehouseConfig(data_dir=tmp_path / "wh", catalog="sqlite", data_path=f"{tmp_path / 'wh' / 'lake'}/")
    _fill(config)
    before = _lake_hashes(config)
    lake_file = next(Path(config.lake_path).rglob("*.parquet"))
    for query in (f"EXPLAIN ANALYZE COPY (select 42 as x) TO '{lake_file}' (FORMAT parquet)",
                  "select * from read_csv('/etc/passwd')",
                  "select * from glob('/root/*')"):
        result = _cli(config, query)
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("error: ")
    assert _lake_hashes(config) == before
    failed = _cli(config, "select * from no_such_table")
    assert (failed.returncode, failed.stderr.count("\n")) == (1, 1)
    answered = _cli(config, "select count(step_text) as n from nodes")
    assert (answered.returncode, answered.stdout) == (0, f"n\n{NODE_COUNT}\n")


def test_the_engine_alone_refuses_outside_paths_and_guard_changes(filled):
    """Defence in depth: with the statement gate bypassed, DuckDB's own guards still hold."""
    import duckdb

    from warehouse.sql import lock_down

    config, outside = filled
    connection = connect(config, read_only=True)
    lock_down(connection, config)
    bypassing = [
        f"COPY (select 1) TO '{outside}/x.parquet'",
        f"EXPORT DATABASE '{outside}/export'",
        f"ATTACH '{outside}/new.duckdb' AS other",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/root/*')",
        "SET enable_external_access = true",
        "RESET allowed_directories",
        "SET lock_configuration = false",
        "INSTALL httpfs",
        "LOAD httpfs",
        "INSERT INTO nodes SELECT * FROM nodes",
        "SELECT * FROM ducklake_expire_snapshots('lake', versions => [1])",
    ]
    ran = []
    for statement in bypassing:
        try:
            connection.execute(statement)
        except duckdb.Error:
            continue
        ran.append(statement)
    connection.close()
    assert ran == []
    assert list(outside.iterdir()) == []
