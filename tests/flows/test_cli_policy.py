"""`prmforge policy train` as a user runs it: a Prefect flow that writes a Hugging Face model
directory, and bad options that end in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM

PRMFORGE = str(Path(sys.executable).parent / "prmforge")


def test_policy_train_writes_a_model_that_transformers_loads(prefect_server_env, tmp_path):
    output = tmp_path / "policy"
    result = subprocess.run(
        [PRMFORGE, "policy", "train", "--steps", "3", "--output", str(output)],
        env=prefect_server_env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    recorded = json.loads((output / "training.json").read_text())
    assert recorded["metrics"] == printed
    assert recorded["config"]["steps"] == 3 and recorded["config"]["warmup_steps"] == 0  # scaled to the run
    assert 0.0 <= printed["solve_rate"] <= 1.0 and printed["parameters"] > 1_000_000
    model = AutoModelForCausalLM.from_pretrained(output)
    assert sum(parameter.numel() for parameter in model.parameters()) == printed["parameters"]


def test_policy_train_refuses_zero_steps_in_one_line(prefect_server_env, tmp_path):
    output = tmp_path / "policy"
    result = subprocess.run(
        [PRMFORGE, "policy", "train", "--steps", "0", "--output", str(output)],
        env=prefect_server_env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: --steps must be at least 1, got 0"
    assert not output.exists()
