"""The train flow's recovery paths, with real Prefect runs on a real warehouse: a registration that
fails rolls back and keeps the trained weights, `train --resume` picks them (or an interrupted
run's checkpoint) up, and a rerun without --resume starts over."""

from __future__ import annotations

import json
from contextlib import contextmanager

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
