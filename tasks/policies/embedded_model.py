"""The embedded default policy: a tiny GPT-2-shaped model trained on CPU on synthetic arithmetic.

No model hub is reachable here, so the project trains its own small policy. It is meant to be
imperfect: it writes well-formed `Step k:` lines but makes real arithmetic mistakes, which is
what a process reward model needs to learn from.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from schemas.records import Problem
from tasks.synthetic import generate_problems
from tasks.text_format import prompt_for, training_text

if TYPE_CHECKING:
    import torch
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

EMBEDDED_POLICY_DIR = Path(__file__).parent / "embedded"
END_OF_TEXT = "<|endoftext|>"
TRAINING_RECORD = "training.json"


@dataclass(frozen=True)
class PolicyTrainConfig:
    """How the embedded policy is trained. The defaults made the committed model (2.8M parameters,
    final loss 0.004, held-out solve rate 0.89 at temperature 1) in about an hour on one shared core."""

    problems: int = field(
        default=30_000,
        metadata={"help": "Distinct synthetic problems in the training corpus."},
    )
    problem_seed: int = field(
        default=1000,
        metadata={"help": "Seed of generate_problems for the corpus; keep it away from demo seeds (0)."},
    )
    vocab_size: int = field(
        default=400,
        metadata={"help": "BPE vocabulary size, the 256 byte symbols and the end-of-text token included."},
    )
    n_layer: int = field(default=6, metadata={"help": "Transformer blocks."})
    n_head: int = field(
        default=6,
        metadata={"help": "Attention heads per block; must divide n_embd. Heads of 32 or 64 suit vLLM's CPU kernels."},
    )
    n_embd: int = field(default=192, metadata={"help": "Hidden size."})
    n_positions: int = field(
        default=256,
        metadata={"help": "Longest sequence in tokens; the longest training text is about 200."},
    )
    steps: int = field(default=2_500, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=32, metadata={"help": "Texts per optimizer step."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate."})
    warmup_steps: int = field(
        default=100,
        metadata={"help": "Linear warm-up steps before the cosine decay to zero."},
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    dropout: float = field(
        default=0.0,
        metadata={"help": "Dropout everywhere; fresh synthetic data never repeats enough to need it."},
    )
    loss_on_question: bool = field(
        default=False,
        metadata={"help": "Train on the question tokens too, not only on the solution."},
    )
    seed: int = field(default=0, metadata={"help": "Seed for initialisation and batch order."})
    eval_problems: int = field(
        default=64,
        metadata={"help": "Held-out problems (never in the corpus) on which the solve rate is measured."},
    )
    eval_samples: int = field(default=4, metadata={"help": "Solutions sampled per held-out problem at temperature 1."})
    threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads. 2 is ~1.6x faster on an idle 2-core machine, but on a busy one "
            "two spinning OpenMP threads made steps many times slower than one."
        },
    )

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_head ({self.n_head}) must divide n_embd ({self.n_embd})")
        if self.vocab_size <= 257:
            raise ValueError(f"vocab_size must exceed 257 (256 bytes + end-of-text), got {self.vocab_size}")
        for name in ("problems", "n_layer", "steps", "batch_size", "threads", "eval_problems", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"need 0 <= warmup_steps < steps, got {self.warmup_steps} and {self.steps}")


class TrainingMetrics(TypedDict):
    """What one training run measured; also written to `training.json` beside the weights."""

    parameters: int
    final_loss: float
    seconds: float  # wall clock
    cpu_seconds: float  # this process's CPU time: what other jobs on a shared machine cannot inflate
    solve_rate: float  # share of sampled solutions (temperature 1) reaching the answer, held-out problems
    greedy_solve_rate: float  # the same with greedy decoding, one solution per problem


def build_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`.

    Digits are always split one per token so arithmetic is learned digit by digit, and the
    byte-level alphabet makes every string, newlines included, round-trip exactly.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        bos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=None,
    )


def build_model(config: PolicyTrainConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2-shaped model sized by `config` (seed torch first for repeatability)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = tokenizer.eos_token_id
    model_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    return GPT2LMHeadModel(model_config)


def parameter_count(model: torch.nn.Module) -> int:
    """Distinct parameters (the tied input and output embeddings count once)."""
    return sum(parameter.numel() for parameter in model.parameters())


@dataclass(frozen=True)
class Example:
    """One training text as token ids; positions before `loss_from` cost no loss."""

    ids: list[int]
    loss_from: int = 0


def encode_corpus(
    tokenizer: PreTrainedTokenizerFast, problems: Sequence[Problem], limit: int, loss_on_question: bool = True
) -> list[Example]:
    """Each problem's worked solution followed by end-of-text, so the model learns where to stop."""
    eos = tokenizer.eos_token_id
    texts = [training_text(problem) for problem in problems]
    encoded = [ids + [eos] for ids in tokenizer(texts)["input_ids"]]
    longest = max(len(ids) for ids in encoded)
    if longest > limit:
        raise ValueError(f"a training text has {longest} tokens but n_positions is {limit}; raise n_positions")
    if loss_on_question:
        return [Example(ids) for ids in encoded]
    prompts = tokenizer([prompt_for(problem.question) for problem in problems])["input_ids"]
    return [Example(ids, len(prompt)) for ids, prompt in zip(encoded, prompts)]


def collate(examples: Sequence[Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (-100 where no loss is wanted: padding,
    and the question when it is excluded).

    >>> ids, mask, labels = collate([Example([5, 6, 7], loss_from=1), Example([8])], pad_id=0)
    >>> ids.tolist(), mask.tolist(), labels.tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]], [[-100, 6, 7], [8, -100, -100]])
    """
    import torch

    width = max(len(example.ids) for example in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, example in enumerate(examples):
        ids[row, : len(example.ids)] = torch.tensor(example.ids, dtype=torch.long)
        mask[row, : len(example.ids)] = 1
        labels[row, example.loss_from : len(example.ids)] = ids[row, example.loss_from : len(example.ids)]
    return ids, mask, labels


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to zero.

    >>> [round(learning_rate_factor(s, 2, 6), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.75, 0.25, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps - 1)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_order(count: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Indices of the texts in each step's batch: shuffled epochs, reproducible from `seed`."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(count))
        rng.shuffle(epoch)
        order.extend(epoch)
    return [order[step * batch_size : (step + 1) * batch_size] for step in range(steps)]


def train_model(
    model: GPT2LMHeadModel,
    corpus: Sequence[Example],
    config: PolicyTrainConfig,
    pad_id: int,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train `model` in place with AdamW; returns the loss of every step."""
    import torch

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, config.warmup_steps, config.steps)
    )
    model.train()
    losses: list[float] = []
    for step, indices in enumerate(batch_order(len(corpus), config.batch_size, config.steps, config.seed)):
        ids, mask, labels = collate([corpus[index] for index in indices], pad_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
    model.eval()
    return losses


def train_embedded_policy(
    output_dir: Path,
    config: PolicyTrainConfig,
    progress: Callable[[int, float], None] | None = None,
) -> TrainingMetrics:
    """Build the tokenizer and model, train them, and save both plus `training.json` to `output_dir`.

    `progress` is called after every optimizer step with the step index and its loss. torch's
    thread count is set for the run and restored afterwards.
    """
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train_and_save(output_dir, config, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train_and_save(
    output_dir: Path, config: PolicyTrainConfig, progress: Callable[[int, float], None] | None
) -> TrainingMetrics:
    import torch

    torch.manual_seed(config.seed)
    started, started_cpu = time.perf_counter(), time.process_time()
    problems = generate_problems(config.problems, seed=config.problem_seed)
    tokenizer = build_tokenizer([training_text(problem) for problem in problems], config.vocab_size)
    corpus = encode_corpus(tokenizer, problems, config.n_positions, config.loss_on_question)
    model = build_model(config, tokenizer)
    losses = train_model(model, corpus, config, tokenizer.pad_token_id, progress)
    seconds, cpu_seconds = round(time.perf_counter() - started, 1), round(time.process_time() - started_cpu, 1)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    held_out = held_out_problems(config, {problem.problem_id for problem in problems})
    sampled, greedy = measure_solve_rates(output_dir, held_out, config.eval_samples)
    metrics = TrainingMetrics(
        parameters=parameter_count(model),
        final_loss=_final_loss(losses),
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        solve_rate=round(sampled, 4),
        greedy_solve_rate=round(greedy, 4),
    )
    record = {"config": asdict(config), "metrics": metrics, "torch": torch.__version__}
    (output_dir / TRAINING_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return metrics


def held_out_problems(config: PolicyTrainConfig, training_ids: set[str]) -> list[Problem]:
    """`config.eval_problems` problems from another seed, none of them in the training corpus."""
    candidates = generate_problems(config.eval_problems + len(training_ids) // 10 + 16, seed=config.problem_seed + 1)
    return [problem for problem in candidates if problem.problem_id not in training_ids][: config.eval_problems]


def measure_solve_rates(model_dir: Path, problems: Sequence[Problem], samples: int) -> tuple[float, float]:
    """(solve rate at temperature 1 with `samples` per problem, greedy solve rate) of a saved model."""
    from schemas.records import SamplingParams
    from tasks.policies.solve_rate import solve_rate
    from tasks.policies.transformers_policy import TransformersPolicy

    policy = TransformersPolicy(model_dir)
    sampled = solve_rate(policy, problems, samples, SamplingParams(temperature=1.0, seed=0))
    greedy = solve_rate(policy, problems, 1, SamplingParams(temperature=0.0))
    return sampled, greedy


def _final_loss(losses: Sequence[float]) -> float:
    """The mean of the last few steps: one batch's loss alone is noisy."""
    tail = losses[-20:]
    return round(sum(tail) / len(tail), 4)
