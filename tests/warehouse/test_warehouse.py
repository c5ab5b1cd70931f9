import pytest

from schemas.config import WarehouseConfig
from schemas.tables import NODES, PROBLEMS, STEP_LABELS
from warehouse.connection import WarehouseError, commit, connect, current_snapshot, without_password
from warehouse.migrations import pending_statements
from warehouse.sql import QueryFailed, QueryRefused, check_read_only, run_query
from warehouse.writes import insert_new, read_table


@pytest.fixture(params=["sqlite", "duckdb"])
def warehouse(tmp_path, request):
    return WarehouseConfig(data_dir=tmp_path / "wh", catalog=request.param)


def tiny_tree(connection):
    connection.execute("BEGIN")
    insert_new(connection, PROBLEMS, PROBLEMS.frame([{"problem_id": "p", "question": "Q?", "answer": "6", "reference_steps": []}]))
    insert_new(connection, NODES, NODES.frame([
        {"node_id": "a", "problem_id": "p", "parent_id": None, "depth": 1, "step_text": "Step 1: 1 + 2 = 3", "is_terminal": False},
        {"node_id": "b", "problem_id": "p", "parent_id": "a", "depth": 2, "step_text": "Step 2: 3 * 2 = 6", "is_terminal": True},
    ]))
    insert_new(connection, STEP_LABELS, STEP_LABELS.frame([
        {"label_id": "la", "node_id": "a", "labeler": "mc", "q": 0.5, "hard": True, "n": 4, "n_correct": 2},
    ]))
    commit(connection, "run test: tiny tree")


def test_migration_is_idempotent_and_makes_no_snapshot_twice(warehouse):
    connection = connect(warehouse)
    first = current_snapshot(connection)
    assert pending_statements(connection) == []
    connection.close()
    connection = connect(warehouse)
    assert current_snapshot(connection) == first
    connection.close()


def test_insert_new_skips_stored_and_repeated_keys(warehouse):
    connection = connect(warehouse)
    frame = PROBLEMS.frame([
        {"problem_id": "p1", "question": "a", "answer": "1", "reference_steps": ["s"]},
        {"problem_id": "p1", "question": "a", "answer": "1", "reference_steps": ["s"]},
        {"problem_id": "p2", "question": "b", "answer": "2", "reference_steps": []},
    ])
    assert insert_new(connection, PROBLEMS, frame) == 2
    assert insert_new(connection, PROBLEMS, frame) == 0
    stored = read_table(connection, PROBLEMS).sort("problem_id")
    assert stored["problem_id"].to_list() == ["p1", "p2"]
    assert stored["reference_steps"].to_list() == [["s"], []]


def test_snapshots_carry_the_run_and_time_travel_works(warehouse):
    connection = connect(warehouse)
    before = current_snapshot(connection)
    tiny_tree(connection)
    message = connection.execute("SELECT commit_message FROM lake.snapshots() ORDER BY snapshot_id DESC LIMIT 1").fetchone()[0]
    assert message == "run test: tiny tree"
    assert connection.execute(f"SELECT count(*) FROM nodes AT (VERSION => {before})").fetchone()[0] == 0
    assert connection.execute("SELECT count(*) FROM nodes").fetchone()[0] == 2
    connection.close()


def test_labeled_steps_view_has_prefix_and_labels(warehouse):
    connection = connect(warehouse)
    tiny_tree(connection)
    connection.close()
    columns, rows = run_query(warehouse, "SELECT node_id, prefix, step_text, mc_q, mc_n, len(labels) FROM labeled_steps ORDER BY depth")
    assert columns == ["node_id", "prefix", "step_text", "mc_q", "mc_n", "len(labels)"]
    assert rows == [
        ("a", "", "Step 1: 1 + 2 = 3", 0.5, 4, 1),
        ("b", "Step 1: 1 + 2 = 3\n", "Step 2: 3 * 2 = 6", None, None, 0),
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM nodes", "only read-only queries"),
        ("SELECT 1; DROP TABLE nodes", "exactly one SQL statement"),
        ("SELEC 1", "syntax error"),
        ("COPY nodes TO 'x.csv'", "only read-only queries"),
        ("ATTACH 'other.db'", "only read-only queries"),
    ],
)
def test_sql_refuses_anything_but_one_read(query, message):
    with pytest.raises(QueryRefused, match=message):
        check_read_only(query)


def test_sql_refusal_changes_nothing(warehouse):
    connection = connect(warehouse)
    tiny_tree(connection)
    connection.close()
    with pytest.raises(QueryRefused):
        run_query(warehouse, "DELETE FROM nodes")
    with pytest.raises(QueryFailed, match="does not exist"):
        run_query(warehouse, "SELECT * FROM no_such_table")
    assert run_query(warehouse, "SELECT count(*) FROM nodes")[1] == [(2,)]


def test_missing_or_unwritable_warehouse_is_one_clear_error(tmp_path):
    with pytest.raises(WarehouseError, match="no warehouse at"):
        run_query(WarehouseConfig(data_dir=tmp_path / "absent"), "SELECT 1")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WarehouseError, match="cannot write to the data directory"):
        connect(WarehouseConfig(data_dir=blocker / "sub"))


@pytest.mark.parametrize(("conninfo", "shown"), [
    ("host=db port=5432 password=s3cret user=prm", "host=db port=5432 password=... user=prm"),
    ("host=db password = 'it\\'s secret' user=prm", "host=db password = ... user=prm"),
    ("postgresql://prm:s3cret@db:5432/prmforge", "postgresql://prm:...@db:5432/prmforge"),
    ("dbname=prmforge host=127.0.0.1", "dbname=prmforge host=127.0.0.1"),
])
def test_catalog_messages_never_show_the_password(conninfo, shown):
    assert without_password(conninfo) == shown
