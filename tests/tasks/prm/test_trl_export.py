"""The exported stepwise dataset trains in TRL's PRMTrainer, and a trained PRM loads with plain transformers."""

from __future__ import annotations

import os

import polars as pl
import pytest
import torch

from schemas.tables import NODES, PROBLEMS, STEP_LABELS
from tasks.dataset import stepwise_rows
from tasks.prm.model import STEP_TOKEN, build_tiny_base, load_for_training

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def exported_dataset(folder) -> str:
    """Two solutions of one problem through the real export (tasks.dataset), written as generate writes it."""
    problems = PROBLEMS.frame([{"problem_id": "p", "source": "synthetic", "question": "Mia has 3 pens. She gets 4 more. How many?", "answer": "7"}])
    steps = [
        ("a1", None, "Step 1: 3 + 4 = 7", False, None), ("a2", "a1", "The answer is 7.", True, True),
        ("b1", None, "Step 1: 3 + 4 = 8", False, None), ("b2", "b1", "The answer is 8.", True, False),
    ]
    nodes = NODES.frame([
        {"node_id": node, "problem_id": "p", "parent_id": parent, "depth": 1 if parent is None else 2,
         "step_text": text, "is_terminal": terminal, "is_correct": correct}
        for node, parent, text, terminal, correct in steps
    ])
    hard = {"a1": True, "a2": True, "b1": False, "b2": False}
    labels = STEP_LABELS.frame([
        {"label_id": f"l{node}", "node_id": node, "labeler": "mc", "q": float(value), "hard": value, "n": 2, "n_correct": 2 * value}
        for node, value in hard.items()
    ])
    dataset, skipped = stepwise_rows(problems, nodes, labels, "mc", test_fraction=0.0)
    assert skipped == [] and dataset.height == 2
    path = folder / "train.parquet"
    dataset.filter(pl.col("split") == "train").write_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_base(tmp_path_factory.mktemp("base") / "tiny")


def test_trl_prm_trainer_takes_real_steps_on_the_export(tiny_base, tmp_path):
    from datasets import load_dataset
    from trl.experimental.prm import PRMConfig, PRMTrainer

    train = load_dataset("parquet", data_files=exported_dataset(tmp_path), split="train")
    assert {"prompt", "completions", "labels"} <= set(train.column_names)
    assert train[0]["labels"] in ([True, True], [False, False])
    model, tokenizer = load_for_training(tiny_base, "hard", "prm", seed=0)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    args = PRMConfig(
        output_dir=str(tmp_path / "trl"), step_separator=STEP_TOKEN, max_steps=3, per_device_train_batch_size=2,
        learning_rate=1e-2, report_to="none", logging_steps=1, save_strategy="no", use_cpu=True, bf16=False,
        gradient_checkpointing=False, disable_tqdm=True, max_length=256,
    )
    trainer = PRMTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    # The separator is our one special token, and labels are read exactly there.
    row = trainer.train_dataset[0]
    separator = tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    assert [i for i, token in enumerate(row["input_ids"]) if token == separator] == [
        i for i, label in enumerate(row["labels"]) if label != -100
    ]
    trainer.train()
    assert trainer.state.global_step == 3
    changed = [name for name, parameter in model.named_parameters() if not torch.equal(before[name], parameter.detach())]
    assert "score.weight" in changed
    assert any(name.startswith("lm.transformer.h.0.") for name in changed)
