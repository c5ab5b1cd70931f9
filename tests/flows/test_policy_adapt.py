"""`prmforge policy adapt` on a real warehouse: the base learns the training problems' reference
solutions (never the held-out ones), `prmforge train --base` takes it, and misuse ends in one line."""

from __future__ import annotations

import json

import pytest

from flows.cli import app
from flows.generate import generate_flow
from schemas.config import GenerateConfig

DATA = GenerateConfig(problems=12, samples=2, rollouts=2, seed=5, policy="simulated", test_fraction=0.25)


@pytest.fixture(scope="module")
def world(prefect_harness, tmp_path_factory):
    """A warehouse with one dataset version and a tiny random GPT-2 base."""
    from schemas.config import WarehouseConfig
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)
    root = tmp_path_factory.mktemp("adapt")
    warehouse = WarehouseConfig(data_dir=root / "warehouse", catalog="sqlite")
    assert generate_flow(DATA, warehouse).dataset_version == 1
    return warehouse, build_tiny_base(root / "base"), root


@pytest.fixture(scope="module")
def adapted(runner, world) -> dict:
    warehouse, base, root = world
    result = runner.invoke(app, ["policy", "adapt", "--output", str(root / "adapted"), "--base", str(base),
                                 "--steps", "30", "--batch-size", "4", "--learning-rate", "0.003",
                                 "--data-dir", str(warehouse.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def reference_loss(model_dir, problems) -> float:
    """Mean next-token loss of a causal LM on the problems' worked solutions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.text_format import training_text

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    losses = []
    with torch.inference_mode():
        for problem in problems:
            ids = torch.tensor([tokenizer(training_text(problem))["input_ids"]])
            if ids.shape[1] > model.config.n_positions:
                continue  # the one adapt skipped too
            losses.append(model(input_ids=ids, labels=ids).loss.item())
    return sum(losses) / len(losses)


def split_problems(warehouse):
    """The problems tasks/prm/adapt.py reads, and the ids of the dataset's held-out problems."""
    from pathlib import Path

    import polars as pl

    from tasks.prm.adapt import training_problems
    from tasks.prm.registry import find_dataset
    from warehouse.connection import connect

    connection = connect(warehouse, read_only=True)
    try:
        dataset = find_dataset(connection)
        train = training_problems(connection, dataset)
        test_ids = set(pl.read_parquet(Path(dataset.path) / "test.parquet")["problem_id"].to_list())
    finally:
        connection.close()
    return train, test_ids


def test_adapt_reads_only_the_training_problems_and_learns_their_solutions(adapted, world):
    from pathlib import Path

    warehouse, base, root = world
    train, test_ids = split_problems(warehouse)
    assert train and test_ids and not {problem.problem_id for problem in train} & test_ids
    assert (adapted["dataset_version"], adapted["problems"] + adapted["skipped"], adapted["steps"]) == (1, len(train), 30)
    assert adapted["problems"] >= len(train) - 2  # the tiny base's 256 positions hold all but the longest
    assert adapted["final_loss"] < adapted["first_loss"]
    output = Path(adapted["output"])
    record = json.loads((output / "adaptation.json").read_text())
    assert record["base"] == str(base) and record["metrics"]["problems"] == adapted["problems"]
    assert reference_loss(output, train) < reference_loss(base, train) - 0.5


def test_train_builds_a_prm_on_the_adapted_base(runner, adapted, world):
    warehouse, _, _ = world
    result = runner.invoke(app, ["train", "--base", adapted["output"], "--steps", "3", "--batch-size", "2",
                                 "--data-dir", str(warehouse.data_dir), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["metrics"]["steps"] == 3


@pytest.mark.parametrize(("options", "message"), [
    (["--steps", "0"], "error: --steps must be at least 1, got 0"),
    (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0"),
    (["--learning-rate", "0"], "error: --learning-rate must be above 0, got 0.0"),
    (["--dataset", "7"], "error: no dataset version 7: versions are 1"),
    (["--base", "/nonexistent/base"], "error: no Hugging Face model at /nonexistent/base (config.json missing): "
                                      "pass a local HF model directory"),
])
def test_misuse_ends_in_one_line(runner, world, tmp_path, options, message):
    warehouse, base, _ = world
    arguments = ["policy", "adapt", "--output", str(tmp_path / "out"), "--base", str(base),
                 "--data-dir", str(warehouse.data_dir), *options]
    result = runner.invoke(app, arguments)
    assert (result.exit_code, result.stderr.strip()) == (1, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("taken", ["folder", "file"])
def test_an_output_that_holds_something_is_refused(runner, world, tmp_path, taken):
    warehouse, base, _ = world
    output = tmp_path / "out"
    if taken == "folder":
        output.mkdir()
        (output / "keep.txt").write_text("mine")
    else:
        output.write_text("mine")
    result = runner.invoke(app, ["policy", "adapt", "--output", str(output), "--base", str(base),
                                 "--data-dir", str(warehouse.data_dir)])
    assert (result.exit_code, result.stderr.strip()) == (1, f"error: {output} is not empty: choose a new folder for the adapted base")
    assert (output / "keep.txt" if taken == "folder" else output).read_text() == "mine"


def test_training_problems_without_worked_solutions_are_refused_in_one_line(world, tmp_path):
    """A dataset whose training problems have no reference steps (seeds without worked solutions)."""
    from dataclasses import replace

    import polars as pl

    from tasks.prm.adapt import AdaptSettings, NothingToAdaptOn, adapt_base, training_problems
    from tasks.prm.registry import find_dataset
    from warehouse.connection import connect

    warehouse, base, _ = world
    pl.DataFrame({"problem_id": ["not-a-seed-problem"]}).write_parquet(tmp_path / "train.parquet")
    connection = connect(warehouse, read_only=True)
    try:
        dataset = replace(find_dataset(connection), path=str(tmp_path))
        with pytest.raises(NothingToAdaptOn, match="none of the 1 training problems of dataset version 1 has reference"):
            training_problems(connection, dataset)
    finally:
        connection.close()
    with pytest.raises(NothingToAdaptOn, match="none of the 0 reference solutions fits"):
        adapt_base(base, [], tmp_path / "out", AdaptSettings())
    assert not (tmp_path / "out").exists()
