"""The PRM training loop: AdamW on the loss at step separators, resumable from checkpoints.

The loop is deliberately plain torch (bench/train_throughput.py holds it to a bare loop's speed).
A checkpoint holds the weights, the optimizer and scheduler state, the RNG state, the next step
and the losses and token count so far; the batch order is a pure function of the seed, so a resumed
run ends with the same weights, and reports the same metrics, as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.policies.embedded_model import batch_order, learning_rate_factor
from tasks.prm.config import PRMTrainConfig
from tasks.prm.data import StepwiseExample, targets
from tasks.prm.model import IGNORE_INDEX, SolutionTooLong, encode_solution

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHECKPOINT_FILE = "checkpoint.pt"
Progress = Callable[[int, float], None]  # (optimizer step just finished, its loss)


@dataclass(frozen=True)
class TrainingExample:
    """One solution ready for the model: token ids and a target (or IGNORE_INDEX) per position."""

    input_ids: list[int]
    targets: list[float]  # IGNORE_INDEX where no loss is taken


@dataclass(frozen=True)
class SkippedExample:
    solution_id: str
    reason: str


@dataclass
class TrainingMetrics:
    examples: int = 0
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    resumed_from_step: int = 0
    final_loss: float = float("nan")
    first_loss: float = float("nan")
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_second: float = 0.0
    device: str = "cpu"

    def as_dict(self) -> dict:
        return asdict(self)


def training_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[StepwiseExample],
    kind: str,
    label_kind: str,
    max_length: int | None,
) -> tuple[list[TrainingExample], list[SkippedExample]]:
    """Encode every example; those that cannot fit or carry no target are skipped with the reason."""
    encoded: list[TrainingExample] = []
    skipped: list[SkippedExample] = []
    for example in examples:
        if not example.steps:
            skipped.append(SkippedExample(example.solution_id, "no steps"))
            continue
        try:
            solution = encode_solution(tokenizer, example.prompt, example.steps, max_length)
        except SolutionTooLong as error:
            skipped.append(SkippedExample(example.solution_id, f"too long: {error}"))
            continue
        row = [float(IGNORE_INDEX)] * len(solution.input_ids)
        for position, target in zip(solution.separator_positions, targets(example, kind, label_kind), strict=True):
            if target is not None:
                row[position] = float(target)
        encoded.append(TrainingExample(solution.input_ids, row))
    return encoded, skipped


def collate(batch: Sequence[TrainingExample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and targets (IGNORE_INDEX on padding).

    >>> ids, mask, goal = collate([TrainingExample([5, 6], [-100.0, 1.0]), TrainingExample([7], [0.0])], pad_id=0)
    >>> ids.tolist(), mask.tolist(), goal.tolist()
    ([[5, 6], [7, 0]], [[1, 1], [1, 0]], [[-100.0, 1.0], [0.0, -100.0]])
    """
    import torch

    width = max(len(example.input_ids) for example in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    goal = torch.full((len(batch), width), float(IGNORE_INDEX))
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        mask[row, :length] = 1
        goal[row, :length] = torch.tensor(example.targets)
    return ids, mask, goal


def separator_loss(logits: torch.Tensor, goal: torch.Tensor, label_kind: str) -> torch.Tensor:
    """Mean loss over the positions that carry a target: cross-entropy (hard) or BCE (soft)."""
    import torch.nn.functional as functional

    labelled = goal != IGNORE_INDEX
    picked = logits[labelled]
    wanted = goal[labelled]
    if label_kind == "hard":
        return functional.cross_entropy(picked.float(), wanted.long())
    return functional.binary_cross_entropy_with_logits(picked[:, 0].float(), wanted)


def total_steps(examples: int, batch_size: int, epochs: float) -> int:
    """Optimizer steps for `epochs` passes, at least one.

    >>> total_steps(10, 4, 1.0), total_steps(10, 4, 3.0), total_steps(1, 8, 0.1)
    (3, 8, 1)
    """
    return max(1, math.ceil(epochs * examples / batch_size))


def train_loop(
    model: PreTrainedModel,
    examples: Sequence[TrainingExample],
    config: PRMTrainConfig,
    pad_id: int,
    device: str,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> TrainingMetrics:
    """Train `model` in place. With `resume`, continue from the checkpoint in `checkpoint_dir` if any."""
    import torch

    if not examples:
        raise ValueError("no training examples: the dataset's train split is empty or every row was skipped")
    steps = total_steps(len(examples), config.batch_size, config.epochs)
    order = batch_order(len(examples), config.batch_size, steps, config.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = int(config.warmup_ratio * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, warmup, steps))
    metrics = TrainingMetrics(examples=len(examples), steps=steps, device=device)
    start, losses = 0, []
    checkpoint = checkpoint_dir / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if resume and checkpoint is not None and checkpoint.exists():
        # Restores the RNG too, and the losses and tokens of the steps before `start`.
        start, losses, metrics.tokens = load_checkpoint(checkpoint, model, optimizer, schedule, config)
        metrics.resumed_from_step = start
    else:
        torch.manual_seed(config.seed)
    model.train()
    tokens_before = metrics.tokens
    began = time.perf_counter()
    for step in range(start, steps):
        ids, mask, goal = collate([examples[index] for index in order[step]], pad_id)
        ids, mask, goal = ids.to(device), mask.to(device), goal.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = separator_loss(logits, goal, config.label_kind)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        metrics.tokens += int(mask.sum())
        losses.append(float(loss.detach()))
        if checkpoint is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == steps):
            save_checkpoint(checkpoint, model, optimizer, schedule, step + 1, config, losses, metrics.tokens)
        if progress is not None:
            progress(step, losses[-1])
    model.eval()
    metrics.seconds = round(time.perf_counter() - began, 3)
    trained_now = metrics.tokens - tokens_before
    metrics.tokens_per_second = round(trained_now / metrics.seconds, 1) if metrics.seconds else 0.0
    if losses:
        metrics.first_loss = round(losses[0], 4)
        tail = losses[-10:]
        metrics.final_loss = round(sum(tail) / len(tail), 4)
    return metrics


def save_checkpoint(
    path: Path, model, optimizer, schedule, next_step: int, config: PRMTrainConfig,
    losses: Sequence[float] = (), tokens: int = 0,
) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "next_step": next_step,
        "rng": torch.get_rng_state(),
        "config": config.training_fingerprint(),
        "losses": list(losses),
        "tokens": tokens,
    }
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, model, optimizer, schedule, config: PRMTrainConfig) -> tuple[int, list[float], int]:
    """Restore the state saved by `save_checkpoint`; returns the step to continue from, and the
    losses and token count of the steps before it."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    if state["config"] != config.training_fingerprint():
        raise ValueError(f"the checkpoint at {path} was made with other settings: rerun without --resume")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"])
    return int(state["next_step"]), list(state.get("losses", [])), int(state.get("tokens", 0))


def model_card(
    model_id: str,
    version: int | None,
    config: PRMTrainConfig,
    base: str,
    dataset_version: int,
    dataset_snapshot: int | None,
    metrics: dict,
) -> str:
    """README.md for the model directory: where it came from, how it was trained, how it scored."""
    title = "Outcome reward model (ORM baseline)" if config.kind == "orm" else "Process reward model"
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: token-classification",
        "tags: [prmforge, process-reward-model, " + config.kind + "]",
        "---",
        "",
        f"# {title} {'v' + str(version) if version else model_id}",
        "",
        f"- model id: `{model_id}`",
        f"- dataset version: {dataset_version} (warehouse snapshot {dataset_snapshot})",
        f"- base model: `{base}`",
        f"- labels: {config.label_kind}; kind: {config.kind}",
        "",
        "Input: the problem, a newline, then every step followed by the `<|step|>` token. A step's score is",
        "read at its `<|step|>`: softmax class 1 for hard labels, the sigmoid of the one logit for soft ones.",
        "",
        "```python",
        "from tasks.prm.score import PRMScorer",
        "scores = PRMScorer('PATH').score('What is 2 + 3?', ['Step 1: 2 + 3 = 5\\nThe answer is 5.'])",
        "```",
        "",
        "## Training config",
        "",
        "```json",
        json.dumps(config.model_dump(), indent=2, sort_keys=True),
        "```",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in sorted(metrics.items()) if not isinstance(value, dict)]
    return "\n".join(lines) + "\n"
