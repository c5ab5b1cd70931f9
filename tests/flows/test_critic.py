"""End to end: `prmforge critic train` on a tiny warehouse makes a model directory that the judge
labeller runs on through the transformers policy, and whose verdicts it reads."""

from __future__ import annotations

import json

import pytest

from flows.cli import app
from flows.generate import generate_flow
from schemas.config import GenerateConfig
from tasks.critic import CriticConfig

DATA = GenerateConfig(problems=8, samples=4, rollouts=2, seed=11, policy="simulated", test_fraction=0.25)


@pytest.fixture(scope="module")
def world(prefect_harness, tmp_path_factory):
    """A warehouse with one dataset version and a tiny random GPT-2 base (256 positions)."""
    from schemas.config import WarehouseConfig
    from tasks.prm.model import build_tiny_base, set_cpu_threads

    set_cpu_threads(1)
    root = tmp_path_factory.mktemp("critic")
    warehouse = WarehouseConfig(data_dir=root / "warehouse", catalog="sqlite")
    assert generate_flow(DATA, warehouse).dataset_version == 1
    return warehouse, build_tiny_base(root / "base")


@pytest.fixture(scope="module")
def critic(runner, world) -> dict:
    warehouse, base = world
    arguments = ["critic", "train", "--dataset", "1", "--base", str(base), "--steps", "60", "--learning-rate", "0.01",
                 "--data-dir", str(warehouse.data_dir), "--json"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, arguments)
    return json.loads(result.stdout) | {"again": json.loads(again.stdout)["status"]}


def record_of(path) -> dict:
    return json.loads((path / "critic.json").read_text())


def test_critic_train_saves_a_model_with_room_for_its_prompts(critic, world):
    from pathlib import Path

    from transformers import AutoConfig

    warehouse, base = world
    path = Path(critic["path"])
    assert (critic["status"], critic["again"], critic["dataset_version"]) == ("completed", "already done", 1)
    assert path.parent == warehouse.data_dir / "critics" and critic["judge"] == f"transformers:{path}"
    # Stepwise texts fit the base's own 256 positions, so they are kept as trained (not extended).
    assert AutoConfig.from_pretrained(path).n_positions == AutoConfig.from_pretrained(base).n_positions == 256
    assert record_of(path)["config"]["protocol"] == CriticConfig.protocol == "stepwise"
    record = json.loads((path / "critic.json").read_text())
    assert (record["dataset_version"], record["labeler"], record["base"]) == (1, "mc", str(base))
    assert record["metrics"]["examples"] > 0 and record["metrics"]["final_loss"] < record["metrics"]["first_loss"]


def test_the_judge_labeller_runs_on_the_critic_and_reads_its_verdicts(critic):
    from schemas.records import Problem, SamplingParams
    from tasks.labelers.base import LabelRequest
    from tasks.labelers.judge import JudgeLabeler
    from tasks.policies.registry import load_policy
    from tasks.splitting import DEFAULT_BOUNDARY
    from tasks.synthetic import generate_problems
    from tasks.tree import build_tree, sample_solutions

    problems = generate_problems(3, seed=5, min_steps=2, max_steps=3)
    solutions, _ = sample_solutions(load_policy("simulated"), problems, 2, SamplingParams(seed=1), DEFAULT_BOUNDARY)
    tree = build_tree(solutions)
    request = LabelRequest({node.node_id: node for node in tree}, {p.problem_id: p for p in problems}, tree, 1,
                           SamplingParams(seed=0))
    result = JudgeLabeler().label(load_policy(critic["judge"]), request)
    assert result.judgements and all(j.output.strip() for j in result.judgements)
    # The labeller read the protocol from critic.json and asked one step per prompt.
    assert not any("You are checking" in j.prompt for j in result.judgements)
    assert result.usage.calls >= 2 and result.params.max_new_tokens == 32
    # Trained on the marks, the tiny critic answers in their form: every answer reads.
    assert [j.first_error for j in result.judgements if j.first_error is None] == []
    assert {label.node_id for label in result.labels} == {node.node_id for node in tree}


@pytest.mark.parametrize(("arguments", "message"), [
    (["--dataset", "9"], "error: no dataset version 9: versions are 1\n"),
    (["--steps", "0"], "error: invalid option: steps must be at least 1, got 0\n"),
    (["--base", "/nowhere"], "error: no Hugging Face model at /nowhere (config.json missing): pass a local HF model directory\n"),
])
def test_errors_are_one_line(runner, world, arguments, message):
    warehouse, _ = world
    result = runner.invoke(app, ["critic", "train", *arguments, "--data-dir", str(warehouse.data_dir)])
    assert (result.exit_code, result.output) == (1, message)
