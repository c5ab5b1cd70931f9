"""The critic: a causal LM fine-tuned to name a solution's first wrong step, the judge's backend.

The judge labeller (tasks/labelers/judge.py) asks in one of two protocols, and the critic
learns the exchange of one, recorded in critic.json so that the labeller picks it
(`backend_protocol`):
- stepwise (the default): the prompt is the problem and the solution up to the step to judge
  (stepwise_prompt); the critic answers with its check of that step, the step's last arithmetic
  claim recomputed and a mark, " | 4 * 3 = 12 wrong" or " | 2 + 2 = 4 ok" (check_answer), and
  the labeller goes on to the next step while the mark is ok. A training text is one step's
  prompt and check, for every step of a solution up to its first step labelled wrong, the loss on
  the check. The recomputed value lands beside the written one, so the mark compares two numbers
  in view; and the texts stay within the base's trained positions.
- whole: JUDGE_PROMPT, answered with " Step k" for the first step labelled wrong or " none"
  (verdict_text), the loss on the verdict. On the embedded policy this learnt the label prior
  and answered " none" to every row, and an answer that copied each step before the verdict could
  not copy at all: past the base's ~256 trained positions (the judge prompt alone is 360-550
  tokens) the extended positions repeat the trained block, so the model cannot tell where it is.
  A stepwise mark with no recomputation ("ok" or "wrong" right after the step) learnt the prior
  too (bench/RESULTS.md, "The critic").
Saved with `save_pretrained`, it is a plain HF directory that the `transformers:PATH` and
`vllm:PATH` policies load, so `--labeler judge --policy transformers:PATH` and bench/consensus.py
`--judge transformers:PATH` use it.

The embedded policy's context (256 tokens) cannot hold the whole judge prompt (about 360-550
tokens), so for that protocol its position embeddings are extended (extend_positions). Training
consumes a dataset version: the labels come from whatever pool built it, never from the problems
the critic will judge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.errors import UserError
from schemas.records import SamplingParams
from tasks.labelers.judge import (
    CRITIC_RECORD, MARKS, STEPWISE, WHOLE, ask_stepwise, judge_prompt, parse_first_error, stepwise_prompt,
)
from tasks.policies.embedded_model import Example, PolicyTrainConfig, parameter_count, train_model
from tasks.prm.data import ORIGINAL, StepwiseExample, first_error

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tasks.policies.base import Policy
    from tasks.processbench import ProcessBenchRow


class CriticBaseError(UserError, ValueError):
    """The base model cannot become a critic (too short a context that cannot be extended)."""


WHOLE_POSITIONS = 768  # the whole protocol's default context


@dataclass(frozen=True)
class CriticConfig:
    """How a critic is fine-tuned. Defaults fit a CPU: about 3-4 s per step of 8 judge prompts."""

    n_positions: int | None = field(
        default=None,
        metadata={"help": "Context of the critic in tokens; a shorter GPT-2 base is extended to it. Default: the "
                  "base's own for stepwise, 768 for whole (judge prompts of 8-step synthetic solutions are ~550)."},
    )
    steps: int = field(default=300, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=8, metadata={"help": "Solutions per optimizer step."})
    learning_rate: float = field(default=5e-4, metadata={"help": "Peak AdamW learning rate."})
    warmup_steps: int = field(default=20, metadata={"help": "Linear warm-up before the cosine decay."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    seed: int = field(default=0, metadata={"help": "Seed of the batch order."})
    balance: bool = field(
        default=False,
        metadata={"help": "Repeat the rarer verdict kind (a named step, or none) until both are as many: "
                  "trained on a pool mostly right, a critic learnt to answer none to everything."},
    )
    protocol: str = field(
        default=STEPWISE,
        metadata={"help": "stepwise: one step per prompt, answered with its arithmetic recomputed then ok or wrong; "
                  "whole: name the first wrong step of the whole judge prompt."},
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads (1 on a shared machine)."})

    def __post_init__(self) -> None:
        for name in ("n_positions", "steps", "batch_size", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"need 0 <= warmup_steps < steps, got {self.warmup_steps} and {self.steps}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.protocol not in (STEPWISE, WHOLE):
            raise ValueError(f"protocol must be {STEPWISE} or {WHOLE}, got {self.protocol!r}")

    def optimizer(self) -> PolicyTrainConfig:
        """The settings train_model reads, in the policy trainer's config."""
        return PolicyTrainConfig(steps=self.steps, batch_size=self.batch_size, learning_rate=self.learning_rate,
                                 warmup_steps=self.warmup_steps, weight_decay=self.weight_decay, seed=self.seed)


def verdict_text(labels: Sequence[bool]) -> str:
    """The answer the critic learns for a solution with these step labels, as the judge numbers steps.

    >>> verdict_text([True, True, False, False]), verdict_text([True, True])
    (' Step 3', ' none')
    >>> parse_first_error(verdict_text([True, True, False, False]), 4), parse_first_error(verdict_text([True]), 1)
    (2, -1)
    """
    wrong = first_error(labels)
    return " none" if wrong == -1 else f" Step {wrong + 1}"


@dataclass(frozen=True)
class CriticExample(Example):
    """A training text and the kind of its verdict (no wrong step; stepwise: this step is right),
    for balancing."""

    says_none: bool = False


def recomputed(step: str) -> str | None:
    """The step's last equation without names (as the arith verifier reads claims), with the exact
    value of its left side in place of what the step wrote; None when it has none that evaluates.

    >>> recomputed("Step 2: 4 * 3 = 13"), recomputed("Half of 9 is 9 / 2 = 4.5 km."), recomputed("Done.")
    ('4 * 3 = 12', '9 / 2 = 4.5', None)
    """
    from tasks.verifiers.arith import NotEvaluable, evaluate_exact
    from tasks.verifiers.claims import EQUALITY
    from tasks.verifiers.reading import extract_claims

    for claim in reversed(extract_claims(step).claims):
        if claim.kind != EQUALITY or claim.lhs.free_symbols:
            continue
        try:
            value = evaluate_exact(claim.lhs)
        except (NotEvaluable, ZeroDivisionError):
            return None
        shown = str(value.p) if value.q == 1 else f"{float(value):g}"
        return f"{' '.join(claim.left_text.split())} = {shown}"
    return None


def check_answer(step: str, right: bool) -> str:
    """What the stepwise critic learns to answer about a step: its arithmetic recomputed, then
    the mark the step's label gives. Recomputing puts the true value beside the written one, where
    comparing them is one look back: a tiny LM's hidden state alone did not tell a wrong sum from a
    right one (tasks/prm/modeling.py).

    >>> check_answer("Step 2: 4 * 3 = 13", False), check_answer("The answer is 12.", True)
    (' | 4 * 3 = 12 wrong', ' | ok')
    """
    claim = recomputed(step)
    return f" | {claim}{MARKS[right]}" if claim else f" |{MARKS[right]}"


def stepwise_texts(
    tokenizer: PreTrainedTokenizerBase, problem: str, steps: Sequence[str], labels: Sequence[bool]
) -> list[CriticExample]:
    """One text per step of a solution up to its first wrong one: the step's prompt, as the
    labeller sends it, then its check and end-of-text, the loss on the check."""
    wrong = first_error(labels)
    checked = len(steps) if wrong == -1 else wrong + 1
    texts = []
    for number in range(1, checked + 1):
        prompt = tokenizer(stepwise_prompt(problem, list(steps[:number])))["input_ids"]
        answer = tokenizer(check_answer(steps[number - 1], number != wrong + 1), add_special_tokens=False)["input_ids"]
        texts.append(CriticExample([*prompt, *answer, tokenizer.eos_token_id], loss_from=len(prompt),
                                   says_none=number != wrong + 1))
    return texts


def training_solutions(examples: Sequence[StepwiseExample]) -> list[StepwiseExample]:
    """What a critic learns from: sampled solutions, reference solutions and their slipped copies
    (each a whole solution with its own labels); merged-step variants repeat a sampled one."""
    from tasks.augment import REFERENCE, SLIP

    return [example for example in examples if example.variant in (ORIGINAL, REFERENCE, SLIP)]


def critic_examples(
    tokenizer: PreTrainedTokenizerBase, examples: Sequence[StepwiseExample], limit: int, protocol: str = STEPWISE
) -> tuple[list[CriticExample], int]:
    """One training text per training solution, the loss on the critic's answer only.

    Whole: the judge prompt, the verdict and end-of-text, the prompt tokenized alone as the policy
    tokenizes it when judging. Stepwise: stepwise_texts, one per step checked (`says_none` there
    is whether that step is right). A solution with a text longer than `limit` is skipped and
    counted.
    """
    encoded, skipped = [], 0
    for example in training_solutions(examples):
        says_none = first_error(example.labels) == -1
        if protocol == STEPWISE:
            texts = stepwise_texts(tokenizer, example.prompt, example.steps, example.labels)
            if max(len(text.ids) for text in texts) > limit:
                skipped += 1
                continue
            encoded.extend(texts)
            continue
        prompt = tokenizer(judge_prompt(example.prompt, list(example.steps)))["input_ids"]
        ids = [*prompt, *tokenizer(verdict_text(example.labels), add_special_tokens=False)["input_ids"],
               tokenizer.eos_token_id]
        if len(ids) > limit:
            skipped += 1
            continue
        encoded.append(CriticExample(ids, loss_from=len(prompt), says_none=says_none))
    return encoded, skipped


def balanced(corpus: Sequence[CriticExample]) -> list[CriticExample]:
    """The corpus with its rarer kind of verdict ("none", or a named step) repeated, in turn,
    until both kinds are as many.

    >>> none, step = CriticExample([1, 9], 1, says_none=True), CriticExample([1, 5], 1, says_none=False)
    >>> [example.ids[1] for example in balanced([none, none, none, step])]
    [9, 9, 9, 5, 5, 5]
    """
    says_none = [example.says_none for example in corpus]
    nones = [example for example, flag in zip(corpus, says_none) if flag]
    named = [example for example, flag in zip(corpus, says_none) if not flag]
    rare, common = sorted((nones, named), key=len)
    if not rare:
        return list(corpus)
    return [*common, *(rare[index % len(rare)] for index in range(len(common)))]


def trained_positions(norms: Sequence[float]) -> int:
    """How many leading position embeddings were trained: up to the first whose norm falls below
    half the mean of the first 16 (untrained ones keep their small initial norm).

    >>> trained_positions([1.0, 0.9, 1.1, 0.3, 0.3]), trained_positions([1.0, 1.0])
    (3, 2)
    """
    reference = sum(norms[:16]) / len(norms[:16])
    return next((index for index, norm in enumerate(norms) if norm < reference / 2), len(norms))


def extend_positions(model: PreTrainedModel, n_positions: int) -> PreTrainedModel:
    """A GPT-2 with `n_positions` positions, every other weight copied; positions past the trained
    ones repeat the trained block (as Longformer extended RoBERTa), so no position starts random."""
    import torch
    from transformers import GPT2LMHeadModel

    old = model.transformer.wpe.weight.detach()
    trained = trained_positions(old.norm(dim=-1).tolist())
    config = model.config.__class__.from_dict({**model.config.to_dict(), "n_positions": n_positions})
    extended = GPT2LMHeadModel(config)
    state = {key: value for key, value in model.state_dict().items() if key != "transformer.wpe.weight"}
    extended.load_state_dict(state, strict=False)
    with torch.no_grad():
        index = torch.arange(n_positions)
        extended.transformer.wpe.weight.copy_(old[torch.where(index < trained, index, index % trained)])
    extended.tie_weights()
    return extended


def load_critic_base(base: Path, n_positions: int | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base LM and tokenizer, a GPT-2 extended to `n_positions` when its context is shorter
    (None: as it is)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.policies.transformers_policy import quiet_transformers

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = int(model.config.max_position_embeddings)
    if n_positions is not None and context < n_positions:
        if model.config.model_type != "gpt2":
            raise CriticBaseError(
                f"the base {base} has a {context}-token context and only GPT-2 positions are extended here; "
                f"pass --positions {context} or fewer, or a base with room for the judge prompt"
            )
        model = extend_positions(model, n_positions)
    return model, tokenizer


def train_critic(
    base: Path, train: Sequence[StepwiseExample], output: Path, config: CriticConfig,
    progress: Callable[[int, float], None] | None = None, record: dict | None = None,
) -> dict:
    """Fine-tune `base` on `train` and save the critic to `output` with `critic.json` (config,
    metrics and `record`, e.g. the dataset version); returns the metrics."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        started = time.perf_counter()
        wanted = config.n_positions or (WHOLE_POSITIONS if config.protocol == WHOLE else None)
        model, tokenizer = load_critic_base(base, wanted)
        context = int(model.config.max_position_embeddings)
        corpus, skipped = critic_examples(tokenizer, train, context, config.protocol)
        if config.balance:
            corpus = balanced(corpus)
        if not corpus:
            raise CriticBaseError(f"no training solution fits {context} tokens ({skipped} skipped); "
                                  "raise --positions or build a dataset with labelled solutions")
        losses = train_model(model, corpus, config.optimizer(), tokenizer.pad_token_id, progress)
    finally:
        torch.set_num_threads(previous)
    return save_critic(model, tokenizer, output, config, {
        "parameters": parameter_count(model), "examples": len(corpus), "skipped": skipped,
        "none_share": round(sum(example.says_none for example in corpus) / len(corpus), 4),
        "first_loss": round(sum(losses[:10]) / len(losses[:10]), 4),
        "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
        "seconds": round(time.perf_counter() - started, 1),
    }, record or {})


def save_critic(model, tokenizer, output: Path, config: CriticConfig, metrics: dict, record: dict) -> dict:
    from tasks.policies.transformers_policy import quiet_transformers

    output.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / CRITIC_RECORD).write_text(json.dumps({"config": asdict(config), "metrics": metrics, **record}, indent=1) + "\n")
    return metrics


def judge_rows(policy: Policy, rows: Sequence[ProcessBenchRow], batch_size: int = 16) -> list[int | None]:
    """The first error a judge names for each row (0-based, -1 = none, None = unreadable or a
    prompt longer than the judge's context), asked as the judge labeller asks, in the backend's
    protocol (backend_protocol) and with the labeller's settings."""
    from tasks.fit import prompts_without_room
    from tasks.labelers.judge import JudgeConfig

    ask, params = JudgeConfig().asking(policy, SamplingParams())
    prompt = stepwise_prompt if ask is ask_stepwise else judge_prompt  # the longest a row is asked
    too_long = prompts_without_room(policy, [prompt(row.problem, list(row.steps)) for row in rows])
    asked = [index for index in range(len(rows)) if index not in too_long]
    found: list[int | None] = [None] * len(rows)
    for start in range(0, len(asked), batch_size):
        batch = asked[start : start + batch_size]
        answers, _ = ask(policy, [rows[index].problem for index in batch], [list(rows[index].steps) for index in batch], params)
        for index, answer in zip(batch, answers, strict=True):
            found[index] = answer.first_error
    return found


def judged_first_error_f1(labels: Sequence[int], found: Sequence[int | None]) -> float | None:
    """ProcessBench's F1 of named first errors: an unreadable answer counts as a miss.

    >>> judged_first_error_f1([-1, -1, 2, 0], [-1, None, 2, 1])
    0.5
    """
    from tasks.processbench import processbench_f1

    wrong = [hit == label for label, hit in zip(labels, found, strict=True) if label != -1]
    right = [hit == label for label, hit in zip(labels, found, strict=True) if label == -1]
    if not wrong or not right:
        return None
    return processbench_f1(sum(wrong) / len(wrong), sum(right) / len(right))
