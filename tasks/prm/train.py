"""The PRM training loop: AdamW on the loss at step separators (plus, for a PRM, its LM's loss on
the good steps), resumable from checkpoints.

The loop runs on transformers.Trainer (tasks/prm/trainer.py), which brings DDP/FSDP, mixed
precision, gradient checkpointing and accumulation; this module keeps what a run means: the
examples, the batches (a pure function of the seed), the loss, the optimizer groups and the
schedule (bench/train_throughput.py holds it to a bare torch loop's speed). A checkpoint holds the
weights, the optimizer and scheduler state, the RNG state, the step, and the losses and token count
so far, so a resumed run ends with the same weights, and reports the same metrics, as an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.policies.embedded_model import batch_order, learning_rate_factor
from tasks.prm.config import PRMTrainConfig
from tasks.prm.data import StepwiseExample, targets
from tasks.prm.model import IGNORE_INDEX, SolutionTooLong, encode_solution
from tasks.prm.modeling import separator_loss  # noqa: F401 - part of this module's interface

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHECKPOINT_FILE = "checkpoint.json"  # written once a checkpoint is complete (tasks/prm/trainer.py)

Progress = Callable[[int, float], None]  # (optimizer step just finished, its loss)


@dataclass(frozen=True)
class TrainingExample:
    """One solution ready for the model: token ids, a target (or IGNORE_INDEX) per position, and
    the tokens its LM learns to predict (the good steps' own tokens; IGNORE_INDEX elsewhere)."""

    input_ids: list[int]
    targets: list[float]  # IGNORE_INDEX where no loss is taken
    lm_targets: list[int] = field(default_factory=list)  # empty: no LM loss


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
    final_loss: float = float("nan")  # the labels' loss (mean of the last 10 steps)
    first_loss: float = float("nan")
    final_lm_loss: float | None = None  # the PRM's own next-token loss on good steps, this stretch's last 10
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
        encoded.append(TrainingExample(solution.input_ids, row, lm_targets(solution, example, kind)))
    return encoded, skipped


def lm_targets(solution, example: StepwiseExample, kind: str) -> list[int]:
    """The tokens of the steps labelled good, where they stand; IGNORE_INDEX elsewhere (an ORM: none).

    >>> from tasks.prm.model import assemble
    >>> solution = assemble([1], [[3, 4], [5]], separator_id=9)
    >>> good_then_bad = StepwiseExample("s", "p", "Q", ("a", "b"), (True, False), (1.0, 0.0), False)
    >>> lm_targets(solution, good_then_bad, "prm")
    [-100, -100, 3, 4, -100, -100, -100]
    """
    if kind != "prm":
        return []
    wanted = [IGNORE_INDEX] * len(solution.input_ids)
    for start, end, good in zip(solution.step_starts, solution.separator_positions, example.labels, strict=True):
        if good:
            wanted[start:end] = solution.input_ids[start:end]
    return wanted


def collate(batch: Sequence[TrainingExample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, targets and LM targets (IGNORE_INDEX on padding).

    >>> batch = [TrainingExample([5, 6], [-100.0, 1.0], [-100, 6]), TrainingExample([7], [0.0])]
    >>> ids, mask, goal, lm = collate(batch, pad_id=0)
    >>> ids.tolist(), mask.tolist(), goal.tolist(), lm.tolist()
    ([[5, 6], [7, 0]], [[1, 1], [1, 0]], [[-100.0, 1.0], [0.0, -100.0]], [[-100, 6], [-100, -100]])
    """
    import torch

    width = max(len(example.input_ids) for example in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    goal = torch.full((len(batch), width), float(IGNORE_INDEX))
    lm = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(batch):
        length = len(example.input_ids)
        ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        mask[row, :length] = 1
        goal[row, :length] = torch.tensor(example.targets)
        if example.lm_targets:
            lm[row, :length] = torch.tensor(example.lm_targets, dtype=torch.long)
    return ids, mask, goal, lm


def total_steps(examples: int, batch_size: int, epochs: float, steps: int | None = None) -> int:
    """Optimizer steps: `steps` when given, else enough for `epochs` passes; at least one.

    >>> total_steps(10, 4, 1.0), total_steps(10, 4, 3.0), total_steps(1, 8, 0.1), total_steps(10, 4, 3.0, steps=50)
    (3, 8, 1, 50)
    """
    if steps is not None:
        return steps
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
    """Train `model` in place on transformers.Trainer (see tasks/prm/trainer.py). With `resume`,
    continue from the checkpoint in `checkpoint_dir` if any.

    Under `torchrun --nproc_per_node N` (or `accelerate launch`) every process calls this with the
    same arguments; each trains on its share of every batch, and the weights end as one process's would.
    """
    from transformers import PrinterCallback, TrainingArguments

    from tasks.policies.transformers_policy import quiet_transformers
    from tasks.prm import trainer as engine

    if not examples:
        raise engine.TrainingSetupError("no training examples: the dataset's train split is empty or every row was skipped")
    steps = total_steps(len(examples), config.batch_size, config.epochs, config.steps)
    order = batch_order(len(examples), config.batch_size, steps, config.seed)
    precision = engine.mixed_precision(config.mixed_precision, device)
    marker = engine.read_marker(checkpoint_dir) if resume and checkpoint_dir is not None else None
    if marker is not None and marker.config != config.training_fingerprint():
        raise engine.TrainingSetupError(f"the checkpoint in {checkpoint_dir} was made with other settings: rerun without --resume")
    if config.lora_rank:
        engine.attach_lora(model, config.lora_rank, config.lora_alpha, config.lora_target_modules)
    scratch = None
    if checkpoint_dir is None:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="prm-train-")
    arguments = TrainingArguments(
        output_dir=str(checkpoint_dir if checkpoint_dir is not None else scratch.name),
        max_steps=steps, per_device_train_batch_size=1, gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate, weight_decay=config.weight_decay, max_grad_norm=1.0,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        gradient_checkpointing=config.gradient_checkpointing, fsdp=True if config.fsdp else None,
        gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        save_strategy="steps" if checkpoint_dir is not None else "no", save_steps=config.checkpoint_every,
        logging_strategy="no", report_to="none", disable_tqdm=True, seed=config.seed,
        remove_unused_columns=False, average_tokens_across_devices=False, dataloader_num_workers=0,
    )
    processes, process = arguments.world_size, arguments.process_index
    engine.check_processes(config, device, processes)
    lm_on = config.kind == "prm" and float(model.config.lm_weight) > 0
    micro_batches = engine.MicroBatches(
        examples, order, pad_id, process, processes, config.gradient_accumulation_steps, lm_on)
    engine.split_batch(order[0], processes * config.gradient_accumulation_steps)  # too small a batch fails here
    warmup = int(config.warmup_ratio * steps)
    metrics = TrainingMetrics(examples=len(examples), steps=steps, device=str(arguments.device.type))
    losses = list(marker.losses) if marker is not None else []
    metrics.tokens = marker.tokens if marker is not None else 0
    metrics.resumed_from_step = marker.step if marker is not None else 0
    with quiet_transformers():
        trainer = engine.PRMTrainer(
            model=model, args=arguments, micro_batches=micro_batches,
            optimizer_groups=lambda wrapped: parameter_groups(wrapped, config),
            schedule=lambda step: learning_rate_factor(step, warmup, steps),
            fingerprint=config.training_fingerprint(), losses=losses, tokens=metrics.tokens, progress=progress,
        )
    trainer.remove_callback(PrinterCallback)  # the metrics come back in TrainingMetrics, not on stdout
    tokens_before = metrics.tokens
    began = time.perf_counter()
    try:
        resume_from = str(checkpoint_dir / marker.folder) if marker is not None else None
        with quiet_transformers():  # no progress bar per checkpoint
            trainer.train(resume_from_checkpoint=resume_from)
    finally:
        if scratch is not None:
            scratch.cleanup()
    if config.lora_rank:
        engine.merge_lora(model)
    model.eval()
    metrics.seconds = round(time.perf_counter() - began, 3)
    metrics.tokens, lm_losses = trainer.tokens, trainer.lm_losses
    trained_now = metrics.tokens - tokens_before
    metrics.tokens_per_second = round(trained_now / metrics.seconds, 1) if metrics.seconds else 0.0
    if lm_losses:
        metrics.final_lm_loss = round(sum(lm_losses[-10:]) / len(lm_losses[-10:]), 4)
    if losses:
        metrics.first_loss = round(losses[0], 4)
        tail = losses[-10:]
        metrics.final_loss = round(sum(tail) / len(tail), 4)
    return metrics


def parameter_groups(model, config: PRMTrainConfig) -> list[dict]:
    """The new step head learns at `head_learning_rate`; the pretrained LM under it at `learning_rate`
    (only what trains: under LoRA, the adapters)."""
    from tasks.prm.trainer import is_head

    named = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    head = [parameter for name, parameter in named if is_head(name)]
    body = [parameter for name, parameter in named if not is_head(name)]
    return [{"params": body, "lr": config.learning_rate}, {"params": head, "lr": config.head_learning_rate}]


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
