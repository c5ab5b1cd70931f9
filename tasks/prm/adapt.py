"""Adapt a base LM to the seeds' own worked solutions before a PRM is built on it (issue 12).

A PRM reads its base LM's surprise at each step's tokens (tasks/prm/modeling.py). The embedded
policy was trained on solutions of at most 6 steps: past about 192 tokens its position embeddings
are untrained, so its surprise there says little, and a PRM on it misses first errors late in long
solutions. Fine-tuning the base for a few hundred steps on the training problems' reference
solutions (next-token loss on the solution only, no label needed) mends that: on
bench/prm_levers.py the PRM's first-error F1 went from 0.701 to 0.798 with the adapted base (with
slips), and to 0.897 with `dataset build --references` as well.

Only the problems of a dataset version's train split are read, so its held-out problems stay
unseen by the base, and only those with reference steps (the seeds' worked solutions).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import duckdb
import polars as pl

from schemas.errors import UserError
from schemas.records import Problem
from schemas.tables import PROBLEMS
from tasks.prm.registry import DatasetRef
from warehouse.writes import read_table

ADAPT_RECORD = "adaptation.json"


class NothingToAdaptOn(UserError):
    """The dataset's training problems carry no reference solutions that fit the base."""


@dataclass(frozen=True)
class AdaptSettings:
    steps: int = 300
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_steps: int = 20
    seed: int = 0


@dataclass(frozen=True)
class AdaptMetrics:
    problems: int  # reference solutions trained on
    skipped: int  # too long for the base's positions
    steps: int
    first_loss: float
    final_loss: float  # mean of the last 10 steps
    seconds: float


def training_problems(connection: duckdb.DuckDBPyConnection, dataset: DatasetRef) -> list[Problem]:
    """The problems of `dataset`'s train split that have reference steps, as of its snapshot."""
    train = Path(dataset.path) / "train.parquet"
    if not train.exists():
        raise NothingToAdaptOn(f"dataset version {dataset.version} has no train split ({train} is missing)")
    wanted = set(pl.read_parquet(train, columns=["problem_id"])["problem_id"].to_list())
    frame = read_table(connection, PROBLEMS, at_snapshot=dataset.snapshot_id)
    rows = frame.filter(pl.col("problem_id").is_in(sorted(wanted)) & (pl.col("reference_steps").list.len() > 0))
    if rows.is_empty():
        raise NothingToAdaptOn(f"none of the {len(wanted)} training problems of dataset version {dataset.version} has "
                               "reference steps: its seeds carry no worked solutions to adapt to")
    return [
        Problem(row["problem_id"], row["question"], row["answer"], row["source"], tuple(row["reference_steps"]))
        for row in rows.sort("problem_id").iter_rows(named=True)
    ]


def adapt_base(base: Path, problems: list[Problem], output: Path, settings: AdaptSettings) -> AdaptMetrics:
    """Fine-tune `base` on the problems' reference solutions and save it, with its tokenizer and
    `adaptation.json`, to `output` (a Hugging Face directory: `prmforge train --base output`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.policies.embedded_model import PolicyTrainConfig, encode_corpus, train_model
    from tasks.policies.transformers_policy import quiet_transformers
    from tasks.prm.model import max_positions, set_cpu_threads

    set_cpu_threads()
    torch.manual_seed(settings.seed)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    limit = max_positions(model.config) or 1024
    fitting = [problem for problem in problems if _fits(tokenizer, problem, limit)]
    if not fitting:
        raise NothingToAdaptOn(f"none of the {len(problems)} reference solutions fits the base's {limit} positions")
    corpus = encode_corpus(tokenizer, fitting, limit, loss_on_question=False)
    schedule = replace(PolicyTrainConfig(), steps=settings.steps, batch_size=settings.batch_size,
                       learning_rate=settings.learning_rate, warmup_steps=min(settings.warmup_steps, settings.steps // 10),
                       seed=settings.seed)
    began = time.perf_counter()
    losses = train_model(model, corpus, schedule, tokenizer.pad_token_id)
    metrics = AdaptMetrics(len(fitting), len(problems) - len(fitting), settings.steps, round(losses[0], 4),
                           round(sum(losses[-10:]) / len(losses[-10:]), 4), round(time.perf_counter() - began, 1))
    output.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    record = {"base": str(base), "settings": asdict(settings), "metrics": asdict(metrics)}
    (output / ADAPT_RECORD).write_text(json.dumps(record, indent=1))
    return metrics


def _fits(tokenizer, problem: Problem, limit: int) -> bool:
    from tasks.text_format import training_text

    return len(tokenizer(training_text(problem))["input_ids"]) + 1 <= limit  # + end-of-text
