"""A chat-template instruct model end to end, as a user runs it: `prmforge generate` with the
`chat` prompt format (system prompt, a few-shot example) on MATH-form seeds, then `prmforge train`
on that dataset with the same model as the PRM's base, then `prmforge evaluate`.

The model is tests/conftest.py's tiny Qwen2-shaped one: it writes the chat format's shape (steps
separated by blank lines, a \\boxed{} answer) with mostly wrong arithmetic, so this checks the
plumbing (the template rendered, the boundary and the boxed reader applied, the format recorded,
every stage completing), not the quality of the labels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

from tasks.synthetic import generate_problems

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
ROOT = Path(__file__).resolve().parents[2]


def prmforge(env: dict, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run([PRMFORGE, *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{arguments[:2]}: {result.stderr[-3000:]}"
    return result


def query(env: dict, data_dir: Path, sql: str) -> list[dict]:
    return json.loads(prmforge(env, "sql", sql, "--format", "json", "--data-dir", str(data_dir)).stdout)


def test_a_chat_model_generates_labels_trains_and_evaluates(prefect_server_env, chat_model_dir, tmp_path):
    seeds, shots = tmp_path / "math.jsonl", tmp_path / "shots.jsonl"
    seeds.write_text("".join(
        json.dumps({"problem": problem.question, "solution": f"So the answer is $\\boxed{{{problem.answer}}}$."}) + "\n"
        for problem in generate_problems(10, seed=21, min_steps=2, max_steps=3)
    ))
    shots.write_text(json.dumps({"question": "Ava has 4 pens. She gets 3 more. How many pens does Ava have now?",
                                 "answer": "7", "steps": ["Step 1: 4 + 3 = 7"]}) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "policy": f"transformers:{chat_model_dir}", "prompt_format": "chat", "few_shot_file": str(shots),
        "seeds_file": str(seeds), "problems": 10, "samples": 3, "rollouts": 2, "max_new_tokens": 96,
        "seed": 1, "test_fraction": 0.4,
    }))
    data_dir = tmp_path / "warehouse"
    env = prefect_server_env

    generated = prmforge(env, "generate", "--config", str(config), "--data-dir", str(data_dir))
    assert "dataset version 1" in generated.stdout

    [run] = query(env, data_dir, "select prompt_format from runs")
    recorded = json.loads(run["prompt_format"])
    assert recorded["kind"] == "chat" and recorded["few_shot"] == 1 and recorded["answer"] == "boxed"
    assert recorded["system_prompt"] == "Please reason step by step, and put your final answer within \\boxed{}."
    assert recorded["step_boundary"] == "\\n\\s*\\n" and recorded["step_separator"] == "\n\n"
    stored = query(env, data_dir, "select (select list(distinct prompt_format) from nodes) as nodes, "
                                  "(select list(distinct prompt_format) from rollouts) as rollouts")
    assert stored == [{"nodes": [recorded["id"]], "rollouts": [recorded["id"]]}]
    steps = query(env, data_dir, "select step_text, is_terminal, final_answer, depth from nodes")
    assert all("\n\n" not in step["step_text"] for step in steps)  # split at blank lines
    assert max(step["depth"] for step in steps) >= 3
    answered = [step for step in steps if step["final_answer"] is not None]
    # Answers are read from \boxed{} (a solution may write on after its boxed step, so not always the last).
    boxed_here = [step for step in answered if f"\\boxed{{{step['final_answer']}}}" in step["step_text"]]
    assert answered and len(boxed_here) >= len(answered) / 2
    labelled = query(env, data_dir, "select count(*) as steps, count(mc_q) as labelled from labeled_steps")
    assert labelled[0]["steps"] == labelled[0]["labelled"] > 0

    # Beside TRL's stepwise Parquet, OpenRLHF's process-reward form of the same solutions.
    [dataset] = query(env, data_dir, "select path from datasets")
    trl = pl.read_parquet(Path(dataset["path"]) / "train.parquet")
    openrlhf = pl.read_parquet(Path(dataset["path"]) / "openrlhf" / "train.parquet")
    assert openrlhf["solution_id"].to_list() == trl["solution_id"].to_list()
    assert openrlhf["value"].to_list() == [["+" if good else "-" for good in labels] for labels in trl["labels"]]

    trained = prmforge(env, "train", "--base", str(chat_model_dir), "--epochs", "1", "--json", "--data-dir", str(data_dir))
    summary = json.loads(trained.stdout)
    assert summary["version"] == 1 and summary["metrics"]["steps"] >= 1

    evaluated = prmforge(env, "evaluate", "--model", "latest", "--json", "--data-dir", str(data_dir))
    assert json.loads(evaluated.stdout)
    metrics = query(env, data_dir, "select kind, metric from evaluations")
    assert {"first_error", "best_of_n"} <= {row["kind"] for row in metrics}
