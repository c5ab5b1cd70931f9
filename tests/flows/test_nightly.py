"""The loop end to end, twice, on a tiny config; its stop and failure paths; and its Prefect
deployment, read back from the API after `schedule` and after `serve` registers it again."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from flows.cli import _register_area_commands, app
from flows.nightly import nightly_flow
from tasks.ids import content_id
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
        epochs=2, learning_rate=1e-2, min_new_labels=1, first_seed=1, test_fraction=0.5, orm_baseline=False,
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


def evidence(warehouse, run_id: str) -> dict:
    (row,) = query(
        warehouse,
        "SELECT decision, reason, metric, compared_with, difference, difference_low, difference_high, problems "
        "FROM decisions WHERE run_id = ? AND stage = 'promote'", [run_id],
    )
    return dict(zip(("decision", "reason", "metric", "compared_with", "difference", "low", "high", "problems"), row))


def assert_decided_on_its_interval(recorded: dict, baseline: str) -> None:
    """The decision is the paired rule applied to the interval the row records, and the reason
    shows the same numbers."""
    assert recorded["metric"] == "prm_min Best-of-16 accuracy" and recorded["compared_with"] == baseline
    assert recorded["problems"] >= 1
    assert recorded["low"] <= recorded["difference"] <= recorded["high"]
    assert recorded["decision"] == ("promote" if recorded["low"] > 0 else "keep")
    shown = f"candidate - {baseline} = {recorded['difference']:+.3f} [{recorded['low']:.3f}, {recorded['high']:.3f}]"
    assert shown in recorded["reason"], recorded["reason"]
    assert f"over {recorded['problems']} held-out problems" in recorded["reason"]


def test_the_first_night_is_measured_against_random_choice_not_promoted_by_default(two_nights):
    warehouse, first, _ = two_nights
    recorded = decisions(warehouse, first.run_id)
    assert [(stage, decision) for stage, decision, _ in recorded[:4]] == [
        ("seeds", "seed 1"), ("generate", "continue"), ("train", "model v1"), ("evaluate", "measured"),
    ]
    assert recorded == first.decisions
    promotion = evidence(warehouse, first.run_id)
    assert promotion["reason"].startswith("no model is promoted yet; ")
    assert_decided_on_its_interval(promotion, "random")
    promoted = query(warehouse, "SELECT version FROM models WHERE promoted")
    assert promoted == ([(1,)] if promotion["decision"] == "promote" else [])
    assert first.status == ("promoted" if promotion["decision"] == "promote" else "kept")


def test_the_second_night_compares_on_the_same_problems_and_decides_on_evidence(two_nights):
    warehouse, first, second = two_nights
    recorded = decisions(warehouse, second.run_id)
    assert [(stage, decision) for stage, decision, _ in recorded[:4]] == [
        ("seeds", "seed 2"), ("generate", "continue"), ("train", "model v2"), ("evaluate", "measured"),
    ]
    promotion = evidence(warehouse, second.run_id)
    if first.status == "promoted":
        # Both models ranked the same fresh solutions of dataset v2's held-out problems.
        assert "promoted v1" in recorded[3][2] and "candidate v2" in recorded[3][2]
        assert_decided_on_its_interval(promotion, "promoted v1")
        assert not promotion["reason"].startswith("no model is promoted yet")
    else:
        assert "promoted v" not in recorded[3][2]
        assert_decided_on_its_interval(promotion, "random")
        assert promotion["reason"].startswith("no model is promoted yet; ")
    expected = 2 if promotion["decision"] == "promote" else (1 if first.status == "promoted" else None)
    promoted = query(warehouse, "SELECT version FROM models WHERE promoted")
    assert promoted == ([(expected,)] if expected else [])
    assert second.candidate_model_id == query(warehouse, "SELECT model_id FROM models WHERE version = 2")[0][0]


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
    assert bad.exit_code == 1
    assert bad.output.strip() == "error: invalid schedule --cron 'not a cron': Invalid cron string: \"not a cron\""


def test_serve_registers_the_deployment_schedule_made_and_changes_nothing(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner

    from flows.nightly import served_deployment

    _register_area_commands()
    options = tmp_path / "nightly.yaml"
    options.write_text("problems: 3\npolicy: simulated\n")
    made = CliRunner().invoke(app, [
        "schedule", "--cron", "30 4 * * 1", "--name", "served", "--config", str(options), "--data-dir", str(tmp_path / "wh"),
    ])
    assert made.exit_code == 0, made.output
    with get_client(sync_client=True) as client:
        before = client.read_deployment_by_name("prmforge-nightly/served")
    Runner().add_deployment(served_deployment("served"))  # what prefect.serve does with each deployment it serves
    with get_client(sync_client=True) as client:
        after = client.read_deployment_by_name("prmforge-nightly/served")
    assert after.id == before.id
    assert [schedule.schedule.cron for schedule in after.schedules] == ["30 4 * * 1"]
    assert after.parameters == before.parameters
    assert after.parameters["config"]["problems"] == 3 and after.parameters["config"]["policy"] == "simulated"


def test_serve_without_a_deployment_is_one_line(prefect_harness):
    _register_area_commands()
    result = CliRunner().invoke(app, ["serve", "--name", "never-scheduled"])
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        "error: no deployment prmforge-nightly/never-scheduled to serve: "
        "create it first with `prmforge schedule --cron '0 2 * * *'` --name never-scheduled"
    ]


# --- nights that stop or fail ----------------------------------------------------------------------

TINY_NIGHT = ["--problems", "2", "--samples", "2", "--rollouts", "2", "--policy", "simulated", "--min-new-labels", "1"]


def test_too_few_new_labels_stop_the_night_before_training(prefect_harness, tmp_path):
    from schemas.config import WarehouseConfig

    warehouse = WarehouseConfig(data_dir=tmp_path / "warehouse", catalog="sqlite")
    config = NightlyConfig(problems=2, samples=2, rollouts=2, policy="simulated", min_new_labels=10_000, first_seed=5)
    night = nightly_flow(config, warehouse)
    assert (night.status, night.dataset_version, night.candidate_model_id) == ("stopped at generate", 1, None)
    (labels,) = query(warehouse, "SELECT count(*) FROM step_labels")[0]
    assert decisions(warehouse, night.run_id) == night.decisions == [
        night.decisions[0], ("generate", "stop", f"only {labels} new labelled steps (< 10000)"),
    ]
    assert night.decisions[0][:2] == ("seeds", "seed 5")
    assert query(warehouse, "SELECT count(*) FROM models") == [(0,)]
    assert query(warehouse, "SELECT status FROM runs WHERE flow = 'nightly'") == [("completed",)]


def test_a_failed_training_is_a_recorded_decision_and_one_line(prefect_harness, tmp_path):
    _register_area_commands()
    data_dir, missing = tmp_path / "warehouse", tmp_path / "no-such-model"
    result = CliRunner().invoke(app, ["nightly", *TINY_NIGHT, "--base", str(missing), "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: no Hugging Face model at {missing}"), result.output
    from schemas.config import WarehouseConfig

    warehouse = WarehouseConfig(data_dir=data_dir)
    (run_id, status), = query(warehouse, "SELECT run_id, status FROM runs WHERE flow = 'nightly'")
    recorded = decisions(warehouse, run_id)
    assert [(stage, decision) for stage, decision, _ in recorded] == [
        ("seeds", "seed 1"), ("generate", "continue"), ("train", "failed"),
    ]
    assert recorded[-1][2].startswith(f"BaseModelMissing: no Hugging Face model at {missing}")
    assert status == "failed"


def test_a_failed_evaluation_is_a_recorded_decision(prefect_harness, tmp_path):
    from schemas.config import WarehouseConfig
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)
    warehouse = WarehouseConfig(data_dir=tmp_path / "warehouse", catalog="sqlite")
    not_a_folder = tmp_path / "report"
    not_a_folder.write_text("a file where the report folder should be\n")
    config = NightlyConfig(
        problems=2, samples=2, rollouts=2, policy="simulated", base=str(build_tiny_base(tmp_path / "base")),
        epochs=1, min_new_labels=1, test_fraction=0.5, report_dir=str(not_a_folder),
    )
    with pytest.raises(FileExistsError):
        nightly_flow(config, warehouse)
    (run_id, status), = query(warehouse, "SELECT run_id, status FROM runs WHERE flow = 'nightly'")
    recorded = decisions(warehouse, run_id)
    assert [(stage, decision) for stage, decision, _ in recorded] == [
        ("seeds", "seed 1"), ("generate", "continue"), ("train", "model v1"), ("train", "orm v2"), ("evaluate", "failed"),
    ]
    assert recorded[-1][2].startswith("FileExistsError: ") and str(not_a_folder) in recorded[-1][2]
    assert status == "failed"
    assert query(warehouse, "SELECT count(*) FROM models WHERE promoted") == [(0,)]


def test_a_failed_gate_stops_the_night_and_publishes_nothing(prefect_harness, tmp_path, monkeypatch):
    from schemas.config import WarehouseConfig
    from tasks import frames

    original = frames.labels_frame
    monkeypatch.setattr(frames, "labels_frame", lambda *args, **kwargs: (lambda frame: frame.with_columns(
        q=pl.when(pl.int_range(pl.len()) == 0).then(1.5).otherwise(pl.col("q"))))(original(*args, **kwargs)))
    warehouse = WarehouseConfig(data_dir=tmp_path / "warehouse", catalog="sqlite")
    config = NightlyConfig(problems=2, samples=2, rollouts=2, policy="simulated", min_new_labels=1, first_seed=3)
    night = nightly_flow(config, warehouse)
    assert (night.status, night.dataset_version, night.candidate_model_id) == ("stopped at generate", None, None)
    assert decisions(warehouse, night.run_id) == night.decisions == [
        night.decisions[0],
        ("generate", "stop", "quality gates failed, nothing published: "
                             "quality gate failed: step_labels.q_in_unit_interval (1 rows)"),
    ]
    assert night.decisions[0][:2] == ("seeds", "seed 3")
    published = {table: query(warehouse, f"SELECT count(*) FROM {table}")[0][0]
                 for table in ("problems", "nodes", "step_labels", "datasets", "models")}
    assert published == dict.fromkeys(published, 0)
    assert query(warehouse, "SELECT expectation FROM dq_results WHERE NOT success") == [("q_in_unit_interval",)]
    assert query(warehouse, "SELECT status FROM runs WHERE flow = 'nightly'") == [("completed",)]


def test_a_generate_run_another_machine_finished_first_stops_the_night(prefect_harness, tmp_path, monkeypatch):
    """Two machines' nights with the same settings chose the same seed; the other one's generate
    run completes between this night's seed choice and its own generate run (it runs when this
    night announces its seed). This night's run is then already done: it stops, training nothing."""
    import flows.nightly as nightly_module
    from flows.generate import generate_flow, run_id_for
    from schemas.config import WarehouseConfig

    warehouse = WarehouseConfig(data_dir=tmp_path / "warehouse", catalog="sqlite")
    config = NightlyConfig(problems=2, samples=2, rollouts=2, policy="simulated", min_new_labels=1, first_seed=4)
    announced, other_machine = nightly_module.announce, []

    def announce(text: str) -> None:
        announced(text)
        if text.startswith("nightly seeds: seed 4 ") and not other_machine:
            other_machine.append(generate_flow(nightly_module.generate_config(config, 4), warehouse))

    monkeypatch.setattr(nightly_module, "announce", announce)
    night = nightly_flow(config, warehouse)
    (first,) = other_machine
    generate_run = run_id_for(nightly_module.generate_config(config, 4))
    assert (first.run_id, first.status, first.dataset_version) == (generate_run, "completed", 1)
    assert (night.status, night.dataset_version, night.candidate_model_id) == ("stopped at generate", None, None)
    assert decisions(warehouse, night.run_id) == night.decisions == [
        night.decisions[0], ("generate", "stop", f"generate run {generate_run} already done: no new dataset"),
    ]
    assert night.decisions[0][:2] == ("seeds", "seed 4")
    assert query(warehouse, "SELECT count(*) FROM runs WHERE flow = 'generate'") == [(1,)]  # written once
    assert query(warehouse, "SELECT count(*) FROM models") == [(0,)]
    assert query(warehouse, "SELECT status FROM runs WHERE flow = 'nightly'") == [("completed",)]


@pytest.fixture(scope="module")
def baseline_night(prefect_harness, tmp_path_factory):
    """A night that also trains the ORM baseline, and whose candidate another machine promotes
    while it trains (the promotion is made when this night announces its model)."""
    import flows.nightly as nightly_module
    from flows.train import reading
    from schemas.config import WarehouseConfig
    from tasks.prm.model import build_tiny_base, set_cpu_threads
    from tasks.prm.registry import find_model

    set_cpu_threads(1)
    root = tmp_path_factory.mktemp("baseline-night")
    warehouse = WarehouseConfig(data_dir=root / "warehouse", catalog="sqlite")
    config = NightlyConfig(
        problems=4, samples=3, rollouts=2, policy="simulated", base=str(build_tiny_base(root / "base")),
        epochs=2, learning_rate=1e-2, min_new_labels=1, first_seed=1, test_fraction=0.5, orm_baseline=True,
    )
    announced = nightly_module.announce
    promoted_by_other = []

    def announce(text: str) -> None:
        announced(text)
        if text.startswith("nightly train: model v1 ") and not promoted_by_other:
            with reading(warehouse) as connection:
                model = find_model(connection, "v1")
            nightly_module.record.fn(warehouse, "another-night", [("promote", "promote", "better on its rows")],
                                     promote_model=model.model_id)
            promoted_by_other.append(model.model_id)

    patch = pytest.MonkeyPatch()
    patch.setattr(nightly_module, "announce", announce)
    try:
        night = nightly_flow(config, warehouse)
    finally:
        patch.undo()
    return warehouse, night, promoted_by_other


def test_the_orm_baseline_is_trained_on_the_nights_dataset_and_used_to_evaluate(baseline_night):
    from tasks.prm.config import EvaluateConfig

    warehouse, night, _ = baseline_night
    assert [(stage, decision) for stage, decision, _ in night.decisions] == [
        ("seeds", "seed 1"), ("generate", "continue"), ("train", "model v1"), ("train", "orm v2"),
        ("evaluate", "measured"), ("promote", "keep"),
    ]
    assert night.decisions[3][2] == "completed: the ORM baseline for the Best-of-N comparison"
    assert decisions(warehouse, night.run_id) == night.decisions
    models = query(warehouse, "SELECT version, kind, dataset_version, base, model_id FROM models ORDER BY version")
    assert [row[:4] for row in models] == [(1, "prm", 1, night_base(warehouse)), (2, "orm", 1, night_base(warehouse))]
    prm_id, orm_id = models[0][4], models[1][4]
    # The candidate's Best-of-N ranks with ORM v2: the orm method is there, from the evaluation
    # run whose id names the ORM.
    orm_rows = query(warehouse, "SELECT DISTINCT run_id FROM evaluations WHERE model_id = ? AND metric LIKE 'orm@%'", [prm_id])
    evaluation = EvaluateConfig(bon_policy="simulated", bon_samples=16, bon_seed=NightlyConfig().bon_seed)
    assert orm_rows == [(content_id("run", "evaluate", prm_id, "dataset:v1:test", evaluation.model_dump_json(), orm_id),)]
    assert query(warehouse, "SELECT count(*) FROM evaluations WHERE model_id = ?", [orm_id]) == [(0,)]  # a baseline only


def night_base(warehouse) -> str:
    (base,) = {row[0] for row in query(warehouse, "SELECT base FROM models")}
    return base


def test_a_candidate_that_is_already_promoted_is_kept_without_measuring_it_twice(baseline_night):
    warehouse, night, promoted_by_other = baseline_night
    (candidate,) = promoted_by_other
    assert night.candidate_model_id == candidate
    assert night.decisions[4][:2] == ("evaluate", "measured")
    assert re.fullmatch(r"candidate v1 F1 (undefined|\d\.\d{4}) on dataset:v1:test \(.*\)", night.decisions[4][2])
    assert "promoted v" not in night.decisions[4][2]  # the incumbent is the candidate: measured once
    assert night.decisions[5] == ("promote", "keep", "the candidate is already the promoted model")
    assert (night.status, night.promoted_model_id) == ("kept", candidate)
    assert query(warehouse, "SELECT version FROM models WHERE promoted") == [(1,)]
    runs = query(warehouse, "SELECT DISTINCT run_id FROM evaluations WHERE model_id = ? AND kind = 'first_error'", [candidate])
    assert len(runs) == 1
    assert query(warehouse, "SELECT run_id, stage, decision FROM decisions WHERE run_id = 'another-night'") == [
        ("another-night", "promote", "promote")]
    assert query(warehouse, "SELECT status FROM runs WHERE flow = 'nightly'") == [("completed",)]


# --- the real console script -------------------------------------------------------------------------

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
ROOT = Path(__file__).resolve().parents[2]


def test_a_policy_that_is_down_ends_the_console_script_in_one_line(prefect_server_env, tmp_path):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = tmp_path / "warehouse"
    result = subprocess.run(
        [PRMFORGE, "nightly", "--problems", "1", "--policy", f"openai:http://127.0.0.1:{port}/v1/embedded",
         "--data-dir", str(data_dir)],
        env=prefect_server_env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], result.stderr[-2000:]
    from schemas.config import WarehouseConfig

    warehouse = WarehouseConfig(data_dir=data_dir)
    (run_id,), = query(warehouse, "SELECT run_id FROM runs WHERE flow = 'nightly'")
    assert re.match(r"PolicyUnavailable: policy endpoint http://127\.0\.0\.1:\d+/v1", decisions(warehouse, run_id)[-1][2])


def test_ctrl_c_ends_the_console_script_in_one_line(prefect_server_env, tmp_path):
    night = subprocess.Popen(
        [PRMFORGE, "nightly", "--problems", "40", "--samples", "4", "--rollouts", "8", "--policy", "simulated",
         "--data-dir", str(tmp_path / "warehouse")],
        env=prefect_server_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen, deadline = [], time.monotonic() + 120
    while not any(line.startswith("[stage] labelling") for line in seen) and time.monotonic() < deadline:
        line = night.stderr.readline()
        if not line and night.poll() is not None:
            break
        seen.append(line)
    night.send_signal(signal.SIGINT)
    _, rest = night.communicate(timeout=120)
    err = "".join(seen) + rest
    assert night.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: interrupted: the decisions made so far are recorded"
    ]
