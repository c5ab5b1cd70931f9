"""Table fingerprints: what a sharded fleet and a single run are compared by (bench/fleet_compare.py)."""

from schemas.config import WarehouseConfig
from schemas.tables import NODES
from warehouse.connection import commit, connect
from warehouse.fingerprint import table_fingerprints
from warehouse.writes import insert_new


def warehouse_with_nodes(folder, rows):
    connection = connect(WarehouseConfig(data_dir=folder, catalog="sqlite"))
    connection.execute("BEGIN")
    insert_new(connection, NODES, NODES.frame(rows))
    commit(connection, "run test: nodes")
    return connection


def node(node_id, step_text, policy, run_id):
    return {"node_id": node_id, "problem_id": "p", "parent_id": None, "depth": 1, "step_text": step_text,
            "is_terminal": False, "policy": policy, "run_id": run_id}


def test_left_out_columns_are_ignored_and_every_other_difference_is_not(tmp_path):
    shard = warehouse_with_nodes(tmp_path / "shard", [node("a", "Step 1: 1 + 2 = 3", "openai:http://127.0.0.1:1/v1/policy", "run-0"),
                                                      node("b", "Step 1: 2 + 2 = 4", "openai:http://127.0.0.1:2/v1/policy", "run-1")])
    single = warehouse_with_nodes(tmp_path / "single", [node("b", "Step 1: 2 + 2 = 4", "openai:http://127.0.0.1:1/v1/policy", "run-s"),
                                                        node("a", "Step 1: 1 + 2 = 3", "openai:http://127.0.0.1:1/v1/policy", "run-s")])
    other = warehouse_with_nodes(tmp_path / "other", [node("a", "Step 1: 1 + 2 = 3", "x", "run-s"),
                                                      node("b", "Step 1: 2 + 2 = 5", "x", "run-s")])
    leave_out = ("run_id", "policy")

    assert table_fingerprints(shard)["nodes"] != table_fingerprints(single)["nodes"]
    assert table_fingerprints(shard, leave_out)["nodes"] == table_fingerprints(single, leave_out)["nodes"]
    assert table_fingerprints(shard, leave_out)["nodes"][0] == 2
    assert table_fingerprints(other, leave_out)["nodes"] != table_fingerprints(single, leave_out)["nodes"]


def test_tables_narrows_the_tables_compared(tmp_path):
    connection = warehouse_with_nodes(tmp_path / "wh", [node("a", "Step 1: 1 + 2 = 3", "p", "r")])
    assert list(table_fingerprints(connection, tables=("nodes", "problems"))) == ["problems", "nodes"]
    assert table_fingerprints(connection, tables=("problems",))["problems"] == (0, "")
