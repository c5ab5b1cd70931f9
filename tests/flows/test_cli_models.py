"""End to end through the CLI: generate (simulated policy) -> train a PRM and an ORM -> score -> evaluate -> models."""

from __future__ import annotations

import json

import polars as pl
import pytest

from flows.cli import app
from flows.generate import generate_flow
from schemas.config import GenerateConfig
from warehouse.connection import connect

DATA = GenerateConfig(problems=8, samples=4, rollouts=2, seed=11, policy="simulated", test_fraction=0.4)


@pytest.fixture(scope="module")
def world(prefect_harness, tmp_path_factory):
    """A warehouse with one dataset version and a tiny random base model."""
    from schemas.config import WarehouseConfig
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)
    root = tmp_path_factory.mktemp("cli-models")
    warehouse = WarehouseConfig(data_dir=root / "warehouse", catalog="sqlite")
    summary = generate_flow(DATA, warehouse)
    assert summary.dataset_version == 1
    return warehouse, build_tiny_base(root / "base")


def invoke(runner, world, *arguments) -> dict | list:
    warehouse, _ = world
    result = runner.invoke(app, [*arguments, "--data-dir", str(warehouse.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained(runner, world):
    _, base = world
    options = ["--dataset", "1", "--base", str(base), "--epochs", "2", "--learning-rate", "0.01"]
    prm = invoke(runner, world, "train", *options)
    orm = invoke(runner, world, "train", *options, "--kind", "orm")
    return prm, orm


def test_train_registers_an_hf_directory_with_a_model_card(trained, world):
    prm, orm = trained
    warehouse, base = world
    assert (prm["status"], prm["version"], orm["version"]) == ("completed", 1, 2)
    card = (warehouse.data_dir / "models" / "v1" / "README.md").read_text()
    connection = connect(warehouse, read_only=True)
    snapshot = connection.execute("SELECT snapshot_id FROM datasets WHERE version = 1").fetchone()[0]
    rows = connection.execute(
        "SELECT version, kind, label_kind, dataset_version, dataset_snapshot, base, promoted FROM models ORDER BY version"
    ).fetchall()
    message = connection.execute("SELECT commit_message FROM lake.snapshots() ORDER BY snapshot_id DESC LIMIT 1").fetchone()[0]
    connection.close()
    assert rows == [(1, "prm", "hard", 1, snapshot, str(base), False), (2, "orm", "hard", 1, snapshot, str(base), False)]
    assert f"dataset version: 1 (warehouse snapshot {snapshot})" in card and '"kind": "prm"' in card
    assert message.endswith(": train orm v2")
    train_rows = pl.read_parquet(warehouse.data_dir / "datasets" / "v1" / "train.parquet").height
    assert prm["metrics"]["examples"] + prm["metrics"]["skipped"] == train_rows
    assert not list((warehouse.data_dir / "models").glob(".train-*"))  # checkpoints go once registered


def test_the_registered_prm_loads_with_plain_transformers(trained):
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(trained[0]["path"])
    assert model.config.prm_kind == "prm" and model.config.num_labels == 2


def test_training_again_with_the_same_settings_writes_nothing(runner, world, trained):
    _, base = world
    again = invoke(runner, world, "train", "--dataset", "1", "--base", str(base), "--epochs", "2", "--learning-rate", "0.01")
    assert (again["status"], again["version"], again["model_id"]) == ("already done", 1, trained[0]["model_id"])


def test_score_by_version(runner, world, trained):
    scores = invoke(runner, world, "score", "--model", "v1", "--problem", "Mia has 3 pens. She gets 4 more.",
                    "--step", "Step 1: 3 + 4 = 7", "--step", "The answer is 7.")
    assert len(scores["per_step"]) == 2 and scores["min"] == min(scores["per_step"])


@pytest.fixture(scope="module")
def evaluation(runner, world, trained, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("report")
    return invoke(runner, world, "evaluate", "--model", "v1", "--report", str(report_dir)), report_dir


def test_evaluate_measures_the_held_out_split_against_every_baseline(evaluation, world):
    summary, report_dir = evaluation
    warehouse, _ = world
    test = pl.read_parquet(warehouse.data_dir / "datasets" / "v1" / "test.parquet").filter(pl.col("variant") == "original")
    assert summary["evaluation_set"] == "dataset:v1:test"
    first_error = summary["first_error"]
    erroneous = int(test["labels"].map_elements(lambda labels: not all(labels), return_dtype=pl.Boolean).sum())
    if first_error["rows"] == test.height:  # too few rows to hold a part out
        assert (first_error["erroneous"], first_error["correct"]) == (erroneous, test.height - erroneous)
    else:
        assert first_error["rows"] < test.height
    methods = set(summary["best_of_n"])
    assert methods == {"prm_min", "prm_last", "prm_product", "prm_mean", "orm", "prm_vote", "prm_filtered_vote",
                       "majority", "random", "oracle"}
    largest = test.group_by("problem_id").len()["len"].max()
    assert [point["n"] for point in summary["best_of_n"]["oracle"]] == [n for n in (1, 2, 4, 8, 16) if n <= largest]
    one = {method: points[0]["accuracy"] for method, points in summary["best_of_n"].items()}
    assert len({round(value, 9) for value in one.values()}) == 1  # at N=1 every method picks the only solution
    assert (report_dir / "model-v1.html").exists() and summary["report_path"].endswith("model-v1.html")


def test_evaluations_are_stored_once(evaluation, world, runner):
    warehouse, _ = world
    connection = connect(warehouse, read_only=True)
    stored = connection.execute("SELECT kind, count(*) FROM evaluations GROUP BY kind ORDER BY kind").fetchall()
    f1 = connection.execute("SELECT value FROM evaluations WHERE kind = 'first_error' AND metric = 'f1'").fetchall()
    connection.close()
    kinds = dict(stored)
    assert kinds["first_error"] == 4 and kinds["min_on_last"] == 1 and kinds["calibration"] == 1
    assert kinds["best_of_n"] == sum(len(points) for points in evaluation[0]["best_of_n"].values())
    assert f1 == [(evaluation[0]["first_error"]["f1"],)]
    again = invoke(runner, world, "evaluate", "--model", "v1")
    assert again["stored"] == 0


def test_evaluate_reads_a_processbench_file_with_a_given_threshold(runner, world, trained, tmp_path):
    path = tmp_path / "pb.jsonl"
    rows = [
        {"id": "a", "problem": "Mia has 3 pens. She gets 4 more.", "steps": ["Step 1: 3 + 4 = 7", "The answer is 7."], "label": -1},
        {"id": "b", "problem": "Mia has 3 pens. She gets 4 more.", "steps": ["Step 1: 3 + 4 = 8", "The answer is 8."], "label": 0},
        {"id": "c", "problem": "Long?", "steps": ["Step 1: " + "1 + " * 300 + "1 = 301"], "label": -1},
        "not a row",
    ]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    summary = invoke(runner, world, "evaluate", "--model", "v1", "--processbench", str(path), "--threshold", "1.0")
    result = summary["first_error"]
    # Every score is below 1.0: step 0 is always the predicted first error.
    assert (result["erroneous_exact"], result["erroneous"], result["correct_exact"], result["correct"]) == (1, 1, 0, 1)
    assert result["f1"] == 0.0 and summary["evaluation_set"].startswith("processbench:pb.jsonl:")
    assert any("pb.jsonl:4 skipped" in note for note in summary["notes"])
    assert "1 solution(s) left out: longer than the model reads" in summary["notes"]


def test_models_lists_versions_with_metrics(runner, world, evaluation):
    listed = invoke(runner, world, "models")
    assert [(model["version"], model["kind"]) for model in listed] == [(1, "prm"), (2, "orm")]
    assert listed[0]["f1"] == evaluation[0]["first_error"]["f1"] and listed[1]["f1"] is None
    assert "test_accuracy" in listed[0]["metrics"]


def test_unknown_model_and_dataset_are_one_line_errors(runner, world, trained):
    warehouse, _ = world
    result = runner.invoke(app, ["evaluate", "--model", "v9", "--data-dir", str(warehouse.data_dir)])
    assert result.exit_code == 1 and "no model 'v9': registered models are v1, v2" in result.output
    result = runner.invoke(app, ["train", "--dataset", "7", "--data-dir", str(warehouse.data_dir)])
    assert result.exit_code == 1 and "no dataset version 7: versions are 1" in result.output


def test_best_of_n_reaches_n_16_when_16_solutions_are_sampled(runner, world, trained):
    summary = invoke(runner, world, "evaluate", "--model", "v1", "--bon-policy", "simulated", "--bon-samples", "16")
    assert summary["best_of_n_source"].startswith("16 fresh solutions per held-out problem from simulated")
    for method, points in summary["best_of_n"].items():
        assert [point["n"] for point in points] == [1, 2, 4, 8, 16], method
        assert len({point["problems"] for point in points}) == 1, method  # every held-out problem at every N
    oracle = [point["accuracy"] for point in summary["best_of_n"]["oracle"]]
    assert oracle == sorted(oracle)  # pass@N never falls as N grows
