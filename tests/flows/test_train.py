"""The train flow's recovery paths, with real Prefect runs on a real warehouse: a registration that
fails rolls back and keeps the trained weights, `train --resume` picks them (or an interrupted
run's checkpoint) up, and a rerun without --resume starts over. And `prmforge train` under
`torchrun`: two processes train, the main one registers once, with one process's weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flows.train as train_module
from flows.cli import _register_area_commands, app
from flows.generate import generate_flow
from flows.train import model_id_for, train_flow, work_dir
from schemas.config import GenerateConfig, WarehouseConfig
from tasks.prm.config import PRMTrainConfig
from tasks.prm.train import CHECKPOINT_FILE
from warehouse.connection import connect

DATA = GenerateConfig(problems=6, samples=3, rollouts=2, seed=13, policy="simulated", test_fraction=0.34)
TRAIN = {"dataset_version": 1, "epochs": 2, "batch_size": 2, "learning_rate": 1e-2}
ROOT = Path(__file__).resolve().parents[2]
WHOLE_RUN = ("examples", "steps", "first_loss", "final_loss", "tokens", "test_accuracy", "test_targets")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)
    return build_tiny_base(tmp_path_factory.mktemp("train-base") / "tiny")


@pytest.fixture(scope="module")
def warehouse(prefect_harness, tmp_path_factory) -> WarehouseConfig:
    """One warehouse holding dataset v1; each test trains with its own seed, so its own model."""
    config = WarehouseConfig(data_dir=tmp_path_factory.mktemp("train") / "warehouse", catalog="sqlite")
    assert generate_flow(DATA, config).dataset_version == 1
    return config


def query(warehouse: WarehouseConfig, sql: str) -> list[tuple]:
    connection = connect(warehouse, read_only=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def weights(folder) -> bytes:
    return (folder / "model.safetensors").read_bytes()


def snapshot_state(warehouse: WarehouseConfig) -> dict:
    messages = [row[0] or "" for row in query(warehouse, "SELECT commit_message FROM lake.snapshots() ORDER BY snapshot_id")]
    return {
        "models": query(warehouse, "SELECT count(*) FROM models")[0][0],
        "train_runs": query(warehouse, "SELECT count(*) FROM runs WHERE flow = 'train'")[0][0],
        "train_snapshots": [message for message in messages if ": train " in message],
    }


def work_folder(warehouse: WarehouseConfig, config: PRMTrainConfig, base):
    """Where the train flow trains this config's model (one per model id: the tests share a warehouse)."""
    (dataset_id,) = query(warehouse, f"SELECT dataset_id FROM datasets WHERE version = {config.dataset_version}")[0]
    return work_dir(warehouse, model_id_for(config, dataset_id, base))


def straight_fit(warehouse: WarehouseConfig, config: PRMTrainConfig, base, folder) -> dict:
    """The train task's own function, uninterrupted, outside the flow and the warehouse's models:
    what a run with these settings computes."""
    from tasks.prm.registry import find_dataset

    connection = connect(warehouse, read_only=True)
    try:
        dataset = find_dataset(connection, config.dataset_version)
    finally:
        connection.close()
    output, metrics = train_module.fit.fn(config, base, dataset, folder / "straight", False)
    return metrics | {"weights": weights(output)}


def test_a_failed_registration_rolls_back_and_train_resume_registers_the_kept_weights(
    warehouse, base, monkeypatch, tmp_path,
):
    def full_disk_at_commit(connection, message):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_module, "commit", full_disk_at_commit)  # the disk fills at the last moment
    config = PRMTrainConfig(base=str(base), seed=1, **TRAIN)
    before = snapshot_state(warehouse)
    version = before["models"] + 1
    with pytest.raises(OSError, match="No space left on device"):
        train_flow(config, warehouse)
    monkeypatch.undo()

    # Rolled back: no model or run row, no snapshot, no models/v<N>; the weights and the final
    # checkpoint are back in the work folder.
    assert snapshot_state(warehouse) == before
    assert not (warehouse.data_dir / "models" / f"v{version}").exists()
    folder = work_folder(warehouse, config, base)
    assert (folder / CHECKPOINT_FILE).exists() and (folder / "model" / "config.json").exists()
    kept = weights(folder / "model")

    _register_area_commands()
    result = CliRunner().invoke(app, [
        "train", "--dataset", "1", "--base", str(base), "--epochs", "2", "--batch-size", "2",
        "--learning-rate", "0.01", "--seed", "1", "--resume", "--data-dir", str(warehouse.data_dir), "--json",
    ])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    registered = warehouse.data_dir / "models" / f"v{version}"
    assert (summary["status"], summary["version"], summary["path"]) == ("completed", version, str(registered))
    steps = summary["metrics"]["steps"]
    assert steps > 1 and summary["metrics"]["resumed_from_step"] == steps  # nothing trained again
    assert weights(registered) == kept
    assert query(warehouse, f"SELECT model_id, run_id FROM models WHERE version = {version}") == [
        (summary["model_id"], summary["run_id"])]
    assert query(warehouse, f"SELECT status FROM runs WHERE run_id = '{summary['run_id']}'") == [("completed",)]
    assert snapshot_state(warehouse)["train_snapshots"] == before["train_snapshots"] + [
        f"run {summary['run_id']}: train prm v{version}"]
    assert not folder.exists()
    # The metrics are the whole run's, although this call trained nothing (see test_prm_train).
    straight = straight_fit(warehouse, config, base, tmp_path)
    assert {key: summary["metrics"][key] for key in WHOLE_RUN} == {key: straight[key] for key in WHOLE_RUN}


@contextmanager
def interrupted_after(steps: int):
    """Like flows.progress.stage, but Ctrl-C arrives once `steps` optimizer steps are done."""
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        if done[0] == steps:
            raise KeyboardInterrupt

    yield advance


def test_resume_continues_an_interrupted_run_and_ends_as_an_uninterrupted_one(warehouse, base, monkeypatch, tmp_path):
    config = PRMTrainConfig(base=str(base), seed=2, checkpoint_every=2, **TRAIN)
    monkeypatch.setattr(train_module, "stage", lambda description, total: interrupted_after(3))
    before = snapshot_state(warehouse)
    with pytest.raises(KeyboardInterrupt):
        train_flow(config, warehouse)
    monkeypatch.undo()
    assert snapshot_state(warehouse) == before
    folder = work_folder(warehouse, config, base)
    assert (folder / CHECKPOINT_FILE).exists() and not (folder / "model").exists()

    resumed = train_flow(config, warehouse, resume=True)
    assert (resumed.status, resumed.version) == ("completed", before["models"] + 1)
    assert resumed.metrics["resumed_from_step"] == 2  # the checkpoint after step 2; step 3 again
    assert not folder.exists()
    # The same settings, uninterrupted: the same weights bit for bit, and the same metrics.
    straight = straight_fit(warehouse, config, base, tmp_path)
    assert weights(warehouse.data_dir / "models" / f"v{resumed.version}") == straight["weights"]
    assert {key: resumed.metrics[key] for key in WHOLE_RUN} == {key: straight[key] for key in WHOLE_RUN}


def test_without_resume_a_rerun_starts_over(warehouse, base, monkeypatch):
    config = PRMTrainConfig(base=str(base), seed=3, checkpoint_every=2, **TRAIN)
    monkeypatch.setattr(train_module, "stage", lambda description, total: interrupted_after(3))
    with pytest.raises(KeyboardInterrupt):
        train_flow(config, warehouse)
    monkeypatch.undo()
    folder = work_folder(warehouse, config, base)
    assert (folder / CHECKPOINT_FILE).exists()
    again = train_flow(config, warehouse)
    assert (again.status, again.metrics["resumed_from_step"]) == ("completed", 0)
    assert not folder.exists()


# `prmforge train` under torchrun: the real console script, two processes on CPU talking gloo over
# loopback. batch_size 3 splits 2 + 1, so the shares hold unequal numbers of labelled steps.
PROCESSES_TRAIN = ["--dataset", "1", "--steps", "3", "--batch-size", "3", "--learning-rate", "0.01", "--seed", "4"]
# As tests/tasks/prm/test_prm_trainer.py: float32 sums in another order over a few AdamW steps.
TOLERANCE = 1e-4


def torchrun_train(arguments: list[str], warehouse: WarehouseConfig, environment: dict, log_path) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node 2 $(which prmforge) train ...`, as the README gives it."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               shutil.which("prmforge", path=str(Path(sys.executable).parent)), "train", *arguments,
               "--data-dir", str(warehouse.data_dir), "--json"]
    environment = environment | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    with log_path.open("w") as log:
        return subprocess.run(command, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=log, text=True, timeout=300)


def saved_weights(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def largest_difference(first: dict, second: dict) -> float:
    assert first.keys() == second.keys()
    return max(float((first[name] - second[name]).abs().max()) for name in first)


@pytest.fixture()
def second_warehouse(prefect_harness, warehouse, tmp_path) -> WarehouseConfig:
    """A warehouse made as `warehouse` was: the same dataset v1, no model yet."""
    config = WarehouseConfig(data_dir=tmp_path / "warehouse", catalog="sqlite")
    assert generate_flow(DATA, config).dataset_version == 1
    same = "SELECT dataset_id FROM datasets WHERE version = 1"
    assert query(config, same) == query(warehouse, same)
    return config


def test_torchrun_prmforge_train_registers_one_model_with_the_weights_of_one_process(
    warehouse, second_warehouse, base, prefect_server_env, tmp_path,
):
    _register_area_commands()
    single = CliRunner().invoke(app, ["train", *PROCESSES_TRAIN, "--base", str(base),
                                      "--data-dir", str(warehouse.data_dir), "--json"])
    assert single.exit_code == 0, single.output
    single = json.loads(single.stdout)

    log = tmp_path / "torchrun.log"
    run = torchrun_train([*PROCESSES_TRAIN, "--base", str(base)], second_warehouse, prefect_server_env, log)
    assert run.returncode == 0, log.read_text()[-3000:]
    summary = json.loads(run.stdout)  # one JSON document: only the main process prints
    assert (summary["status"], summary["version"], summary["model_id"]) == ("completed", 1, single["model_id"])
    # Registered once: one model row, one train run, one snapshot, one model directory.
    state = snapshot_state(second_warehouse)
    assert (state["models"], state["train_runs"], len(state["train_snapshots"])) == (1, 1, 1)
    assert sorted(path.name for path in (second_warehouse.data_dir / "models").iterdir()) == ["v1"]
    distributed, alone = saved_weights(Path(summary["path"])), saved_weights(Path(single["path"]))
    assert largest_difference(distributed, alone) < TOLERANCE
    for key in ("steps", "examples", "tokens", "test_targets"):
        assert summary["metrics"][key] == single["metrics"][key]
    assert summary["metrics"]["first_loss"] == pytest.approx(single["metrics"]["first_loss"], abs=1e-4)
    assert summary["metrics"]["final_loss"] == pytest.approx(single["metrics"]["final_loss"], abs=1e-4)


def test_under_torchrun_an_error_on_the_main_process_ends_every_process_with_one_line(
    second_warehouse, base, prefect_server_env, tmp_path,
):
    log = tmp_path / "torchrun.log"
    started = time.monotonic()
    run = torchrun_train(["--dataset", "9", "--base", str(base), "--steps", "2"], second_warehouse, prefect_server_env, log)
    assert run.returncode != 0 and time.monotonic() - started < 200  # not left waiting in a collective
    errors = sorted(line for line in log.read_text().splitlines() if line.startswith("error:"))
    assert errors == [
        "error: no dataset version 9: versions are 1",
        "error: the main process failed: no dataset version 9: versions are 1",
    ]
    assert snapshot_state(second_warehouse)["models"] == 0


def test_fsdp_on_a_cpu_is_refused_in_one_line(warehouse, base):
    _register_area_commands()
    result = CliRunner().invoke(app, ["train", "--dataset", "1", "--base", str(base), "--steps", "1", "--fsdp",
                                      "--data-dir", str(warehouse.data_dir)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: fsdp needs GPUs: on CPU processes accelerate trains with DDP instead (drop --fsdp)")
