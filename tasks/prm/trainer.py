"""The PRM's training engine: `transformers.Trainer` (accelerate underneath) fed prmforge's own batches.

What the Trainer does: the device, DDP or FSDP under `torchrun`/`accelerate launch`, autocast,
gradient checkpointing and accumulation, clipping, and checkpoints (model, optimizer, schedule,
RNG state, step). What stays ours, so that a run means what it meant before the Trainer:
- the batches: step s trains on `batch_order(...)[s]`, a pure function of the seed. Each of the
  `processes * gradient_accumulation_steps` micro-batches of a step takes a contiguous share of it.
- the loss: the model's own. Each micro-batch's step loss (and LM loss) is weighted by its share of
  the step's labelled positions (and LM targets), so the optimizer step sees the mean over the whole
  batch, exactly as one process with no accumulation would, however the batch is split.
- the optimizer (AdamW on `parameter_groups`: the head at its own rate) and the LR schedule.
- a completion marker, `checkpoint.json`, written once a Trainer checkpoint is complete: the
  checkpoint's folder, the settings' fingerprint, and the losses and tokens so far.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Trainer

from schemas.errors import UserError
from tasks.prm.model import IGNORE_INDEX
from tasks.prm.train import CHECKPOINT_FILE, collate

CHECKPOINT_PREFIX = "checkpoint-"


class TrainingSetupError(UserError, ValueError):
    """Settings this run cannot train with, and what to change."""


def check_processes(config, device: str, processes: int) -> None:
    """Refuse, before anything is read, what several processes or FSDP cannot do here.

    accelerate (1.15) shards with FSDP only across GPUs (or other accelerators): on CPU processes,
    or in one process, it drops the FSDP plugin without a word and trains with DDP or alone.

    >>> from tasks.prm.config import PRMTrainConfig
    >>> check_processes(PRMTrainConfig(dataset_version=1, fsdp=True), "cpu", 2)
    Traceback (most recent call last):
    ...
    tasks.prm.trainer.TrainingSetupError: fsdp needs GPUs: on CPU processes accelerate trains with DDP instead (drop --fsdp)
    """
    if config.fsdp and not device.startswith("cuda"):
        raise TrainingSetupError("fsdp needs GPUs: on CPU processes accelerate trains with DDP instead (drop --fsdp)")
    if config.fsdp and processes == 1:
        raise TrainingSetupError("fsdp needs several processes: launch with torchrun --nproc_per_node N or accelerate launch")
    if config.kind == "implicit" and processes > 1:
        raise TrainingSetupError("the implicit PRM trains in one process: run it without torchrun or accelerate launch")


@dataclass(frozen=True)
class StepCounts:
    """What a whole optimizer step's batch holds, summed over every process and micro-batch."""

    tokens: int  # non-padding tokens
    targets: int  # positions that carry a label
    lm_targets: int  # next-token targets of the LM loss (after the shift)


def split_batch(indices: Sequence[int], parts: int) -> list[list[int]]:
    """Contiguous shares, as equal as can be, the larger first.

    >>> split_batch([1, 2, 3, 4, 5], 2), split_batch([1, 2, 3, 4], 4)
    ([[1, 2, 3], [4, 5]], [[1], [2], [3], [4]])
    """
    if parts > len(indices):
        raise TrainingSetupError(
            f"a batch of {len(indices)} cannot be split over {parts} processes x accumulation steps: "
            "raise batch_size or lower gradient_accumulation_steps or the process count"
        )
    size, extra = divmod(len(indices), parts)
    shares, start = [], 0
    for part in range(parts):
        end = start + size + (part < extra)
        shares.append(list(indices[start:end]))
        start = end
    return shares


def counts(examples: Sequence, lm_on: bool) -> StepCounts:
    """Tokens, labelled positions and LM targets of some TrainingExamples."""
    return StepCounts(
        tokens=sum(len(example.input_ids) for example in examples),
        targets=sum(sum(target != IGNORE_INDEX for target in example.targets) for example in examples),
        lm_targets=sum(sum(token != IGNORE_INDEX for token in example.lm_targets[1:]) for example in examples)
        if lm_on else 0,
    )


class MicroBatches(torch.utils.data.Dataset):
    """Item `step * accumulation + micro`: this process's share of that step's batch, collated, with
    the weights that make the shares' losses add up to the whole batch's mean."""

    def __init__(self, examples, order: list[list[int]], pad_id: int, process: int, processes: int,
                 accumulation: int, lm_on: bool) -> None:
        self.examples, self.order, self.pad_id = examples, order, pad_id
        self.process, self.processes, self.accumulation, self.lm_on = process, processes, accumulation, lm_on
        self.steps = [counts([examples[index] for index in batch], lm_on) for batch in order]

    def __len__(self) -> int:
        return len(self.order) * self.accumulation

    def __getitem__(self, item: int) -> dict:
        step, micro = divmod(item, self.accumulation)
        share = split_batch(self.order[step], self.processes * self.accumulation)[micro * self.processes + self.process]
        batch = [self.examples[index] for index in share]
        ids, mask, goal, lm = collate(batch, self.pad_id)
        mine, whole = counts(batch, self.lm_on), self.steps[step]
        # DDP averages the processes' gradients: a share's weight is scaled up by their number.
        return {
            "input_ids": ids, "attention_mask": mask, "labels": goal, "lm_labels": lm,
            "target_share": self.processes * mine.targets / whole.targets if whole.targets else 0.0,
            "lm_share": self.processes * mine.lm_targets / whole.lm_targets if whole.lm_targets else 0.0,
        }


def _only(items: list[dict]) -> dict:
    return items[0]


@dataclass
class Marker:
    step: int
    folder: str
    config: str
    losses: list[float]
    tokens: int


def read_marker(checkpoint_dir: Path) -> Marker | None:
    path = checkpoint_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    return Marker(**json.loads(path.read_text()))


def write_marker(checkpoint_dir: Path, marker: Marker) -> None:
    """Atomically, then drop every other checkpoint folder (the marker no longer points at them)."""
    partial = checkpoint_dir / (CHECKPOINT_FILE + ".partial")
    partial.write_text(json.dumps(marker.__dict__))
    os.replace(partial, checkpoint_dir / CHECKPOINT_FILE)
    for folder in checkpoint_dir.glob(CHECKPOINT_PREFIX + "*"):
        if folder.is_dir() and folder.name != marker.folder:
            shutil.rmtree(folder, ignore_errors=True)


def is_head(name: str) -> bool:
    """The step head's parameters, under whatever wrapper (DDP, FSDP, torch.compile) holds the model.

    >>> is_head("score.weight"), is_head("module.score.bias"), is_head("lm.transformer.wte.weight")
    (True, True, False)
    """
    for wrapper in ("module.", "_fsdp_wrapped_module.", "_orig_mod."):
        name = name.replace(wrapper, "")
    return name.startswith("score.")


class PRMTrainer(Trainer):
    """Trainer with prmforge's batches, loss weighting, optimizer, schedule and checkpoint marker."""

    loss_is_scaled_for_ga = True  # each micro-batch's loss is already its share of the whole step's

    def __init__(self, *, micro_batches: MicroBatches, optimizer_groups: Callable, schedule: Callable[[int], float],
                 fingerprint: str, losses: list[float], tokens: int, progress: Callable | None, **kwargs) -> None:
        super().__init__(train_dataset=micro_batches, **kwargs)
        self.model_accepts_loss_kwargs = False  # the batch carries its own weights; no counting pass
        self.micro_batches, self.optimizer_groups, self.schedule = micro_batches, optimizer_groups, schedule
        self.fingerprint, self.losses, self.lm_losses, self.tokens = fingerprint, losses, [], tokens
        self.progress = progress
        self.lm_weight = float(self.model.config.lm_weight)
        self._parts = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        self._recorded_step = -1

    def get_train_dataloader(self) -> torch.utils.data.DataLoader:
        # Not accelerator.prepare()d: every process already takes its own share of each step.
        return torch.utils.data.DataLoader(self.micro_batches, batch_size=1, shuffle=False, collate_fn=_only)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(self.optimizer_groups(model or self.model), weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, self.schedule)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def compute_loss(self, model, inputs: dict, return_outputs: bool = False, num_items_in_batch=None):
        target_share, lm_share = inputs.pop("target_share"), inputs.pop("lm_share")
        output = model(**inputs)
        if target_share:
            loss = output.step_loss * target_share
            self._parts[0] += output.step_loss.detach() * (target_share / self.micro_batches.processes)
        else:  # no labelled position in this share: contribute nothing, but stay in the graph for DDP
            loss = output.logits.sum() * 0.0
        if output.lm_loss is not None and lm_share:
            loss = loss + self.lm_weight * output.lm_loss * lm_share
            self._parts[1] += output.lm_loss.detach() * (lm_share / self.micro_batches.processes)
        return (loss, output) if return_outputs else loss

    def _maybe_log_save_evaluate(self, *args, **kwargs) -> None:
        """After each optimizer step: record it, let the Trainer save, then report progress (after the
        save, so that a run stopped from `progress` has its checkpoint). The epoch's end calls this
        once more for the same step."""
        step = self.state.global_step
        new = step > self._initial_global_step and step != self._recorded_step
        if new:
            self._record(step)
        super()._maybe_log_save_evaluate(*args, **kwargs)
        if new and self.progress is not None:
            self.progress(step - 1, self.losses[-1])

    def _record(self, step: int) -> None:
        """The step's whole-batch losses (summed over the processes) and tokens."""
        parts = self._parts
        if self.micro_batches.processes > 1:
            parts = parts.clone()
            torch.distributed.all_reduce(parts)
        whole = self.micro_batches.steps[step - 1]
        self.losses.append(float(parts[0]))
        if whole.lm_targets:
            self.lm_losses.append(float(parts[1]))
        self.tokens += whole.tokens
        self._parts.zero_()
        self._recorded_step = step

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every process's RNG state is in the folder
        if self.is_world_process_zero():
            folder = f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            write_marker(Path(self.args.output_dir), Marker(
                self.state.global_step, folder, self.fingerprint, list(self.losses), self.tokens))


def mixed_precision(choice: str, device: str) -> str:
    """'bf16', 'fp16' or 'no' for this device: 'auto' is bf16 where a GPU supports it, else fp32.

    >>> mixed_precision("auto", "cpu"), mixed_precision("no", "cuda"), mixed_precision("bf16", "cpu")
    ('no', 'no', 'bf16')
    """
    if choice == "auto":
        return "bf16" if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if choice == "fp16" and not device.startswith("cuda"):
        raise TrainingSetupError("mixed_precision 'fp16' needs a GPU: use 'bf16' or 'no' on a CPU")
    return choice


def attach_lora(model, rank: int, alpha: float, target_modules: Sequence[str] | None) -> None:
    """Wrap `model.lm` in LoRA adapters (peft); only the adapters and the step head then train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise TrainingSetupError("lora_rank needs peft: pip install peft (it is pinned in requirements.lock)") from error
    adapters = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0,
                          target_modules=list(target_modules) if target_modules else None)
    model.lm = get_peft_model(model.lm, adapters)


def merge_lora(model) -> None:
    """Fold the adapters into the base weights: the saved model is a plain StepRewardModel."""
    if hasattr(model.lm, "merge_and_unload"):
        model.lm = model.lm.merge_and_unload()
