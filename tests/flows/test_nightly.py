"""The loop end to end, twice, on a tiny config; and its Prefect deployment read back from the API."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.cli import _register_area_commands, app
from flows.nightly import nightly_flow
from tasks.prm.config import NightlyConfig
from tasks.synthetic import generate_problems
from warehouse.connection import connect


@pytest.fixture(scope="module")
def two_nights(prefect_harness, tmp_path_factory):
    from schemas.config import WarehouseConfig
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)
    root = tmp_path_factory.mktemp("nightly")
    warehouse = WarehouseConfig(data_dir=root / "warehouse", catalog="sqlite")
    config = NightlyConfig(
        problems=4, samples=3, rollouts=2, policy="simulated", base=str(build_tiny_base(root / "base")),
        epochs=2, learning_rate=1e-2, min_new_labels=1, first_seed=1, test_fraction=0.5,
    )
    return warehouse, nightly_flow(config, warehouse), nightly_flow(config, warehouse)


def query(warehouse, sql: str, parameters=()) -> list[tuple]:
    connection = connect(warehouse, read_only=True)
    try:
        return connection.execute(sql, list(parameters)).fetchall()
    finally:
        connection.close()


def test_each_night_draws_new_seed_problems(two_nights):
    warehouse, first, second = two_nights
    assert (first.seed, second.seed) == (1, 2)
    by_run = {}
    for problem_id, run_id in query(warehouse, "SELECT problem_id, run_id FROM problems"):
        by_run.setdefault(run_id, set()).add(problem_id)
    seeded = {seed: {problem.problem_id for problem in generate_problems(4, seed)} for seed in (1, 2)}
    assert not seeded[1] & seeded[2]
    assert sorted(map(sorted, by_run.values())) == sorted(map(sorted, seeded.values()))  # one run per seed
    assert (first.dataset_version, second.dataset_version) == (1, 2)


def decisions(warehouse, run_id: str) -> list[tuple[str, str, str]]:
    return query(warehouse, "SELECT stage, decision, reason FROM decisions WHERE run_id = ? ORDER BY created_at", [run_id])


def test_the_first_night_promotes_its_model_because_none_is_promoted(two_nights):
    warehouse, first, _ = two_nights
    recorded = decisions(warehouse, first.run_id)
    assert [(stage, decision) for stage, decision, _ in recorded] == [
        ("seeds", "seed 1"), ("generate", "continue"), ("train", "model v1"), ("evaluate", "measured"),
        ("promote", "promote"),
    ]
    assert recorded[-1][2] == "no model is promoted yet"
    assert recorded == first.decisions


def test_the_second_night_compares_on_the_same_rows_and_decides(two_nights):
    warehouse, first, second = two_nights
    recorded = decisions(warehouse, second.run_id)
    assert [(stage, decision) for stage, decision, _ in recorded[:4]] == [
        ("seeds", "seed 2"), ("generate", "continue"), ("train", "model v2"), ("evaluate", "measured"),
    ]
    stage, decision, reason = recorded[4]
    assert stage == "promote" and decision in ("promote", "keep")
    # Both models were measured on dataset v2's held-out rows; the decision follows their F1.
    f1 = dict(query(
        warehouse,
        "SELECT m.version, e.value FROM evaluations e JOIN models m USING (model_id) "
        "WHERE e.kind = 'first_error' AND e.metric = 'f1' AND e.details_json LIKE '%\"dataset_version\": 2%'",
    ))
    assert set(f1) == {1, 2}
    assert "promoted v1" in recorded[3][2] and "candidate v2" in recorded[3][2]
    better = f1[2] is not None and (f1[1] is None or f1[2] > f1[1])
    assert decision == ("promote" if better else "keep")
    promoted = query(warehouse, "SELECT version FROM models WHERE promoted")
    assert promoted == [(2 if better else 1,)]
    assert second.status == ("promoted" if better else "kept")


def test_every_night_is_a_run_and_its_decisions_are_snapshots(two_nights):
    warehouse, first, second = two_nights
    runs = query(warehouse, "SELECT run_id, json_extract(config_json, '$.seed')::INT FROM runs WHERE flow = 'nightly' ORDER BY 2")
    assert runs == [(first.run_id, 1), (second.run_id, 2)]
    messages = [row[0] for row in query(warehouse, "SELECT commit_message FROM lake.snapshots()") if row[0]]
    assert f"run {second.run_id}: nightly promote" in messages


def test_schedule_creates_a_deployment_whose_cron_reads_back(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    _register_area_commands()
    result = CliRunner().invoke(app, ["schedule", "--cron", "0 2 * * *", "--data-dir", str(tmp_path / "wh")])
    assert result.exit_code == 0, result.output
    assert "prmforge-nightly/nightly" in result.stdout
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("prmforge-nightly/nightly")
    assert [schedule.schedule.cron for schedule in deployment.schedules] == ["0 2 * * *"]
    assert deployment.parameters["warehouse"]["data_dir"] == str((tmp_path / "wh").resolve())
    assert deployment.parameters["config"]["problems"] == NightlyConfig().problems
    bad = CliRunner().invoke(app, ["schedule", "--cron", "not a cron"])
    assert bad.exit_code == 1 and "invalid schedule" in bad.output
