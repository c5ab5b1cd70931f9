"""The implicit PRM ("Free Process Rewards without Process Labels"): the cheap competitor.

An outcome model parametrised as a log-likelihood ratio: a copy of the policy, pi, is trained so
that r(y) = beta * log pi(y) / pi_ref(y), summed over the solution's tokens, predicts whether the
final answer is right (cross-entropy on sigmoid(r)), with pi_ref the frozen base. No step label
is used. Its process reward comes for free: q_t, the same sum over the tokens up to the end of step
t, and a step's score here is sigmoid(q_t), the model's chance of a right answer so far.

The text is the policy's own format (tasks/text_format.py): the prompt, then each step and a
newline. The trained directory is a plain causal LM with `prm_kind: implicit`, the reference
model's path and beta in its config.json; PRMScorer reads it like any other PRM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.prm.data import StepwiseExample
from tasks.text_format import prompt_for

if TYPE_CHECKING:
    import torch

CONFIG_KIND = "prm_kind"
CONFIG_REFERENCE = "prm_reference"
CONFIG_BETA = "prm_beta"
IMPLICIT = "implicit"


@dataclass(frozen=True)
class EncodedText:
    input_ids: list[int]
    step_ends: list[int]  # for each step, the position of its last token
    prompt_tokens: int


def encode_text(tokenizer, problem: str, steps: Sequence[str], max_length: int | None = None) -> EncodedText | None:
    """The policy-format ids of a solution and where each step ends; None if it cannot fit."""
    ids = tokenizer(prompt_for(problem), add_special_tokens=False)["input_ids"]
    prompt_tokens = len(ids)
    ends = []
    for step in steps:
        ids = ids + tokenizer(step + "\n", add_special_tokens=False)["input_ids"]
        ends.append(len(ids) - 1)
    if not steps or (max_length is not None and len(ids) > max_length):
        return None
    return EncodedText(ids, ends, prompt_tokens)


def step_scores(token_log_ratios: Sequence[float], step_ends: Sequence[int], prompt_tokens: int, beta: float) -> list[float]:
    """sigmoid(q_t) per step, q_t = beta * the log-ratio summed over the solution's tokens through
    step t. `token_log_ratios[i]` is the log-ratio of token i (the prompt's tokens are skipped).

    >>> [round(x, 4) for x in step_scores([9.0, 0.5, 0.5, -2.0], step_ends=[2, 3], prompt_tokens=1, beta=1.0)]
    [0.7311, 0.2689]
    """
    scores, total, position = [], 0.0, prompt_tokens
    for end in step_ends:
        total += sum(token_log_ratios[position : end + 1])
        position = end + 1
        scores.append(1.0 / (1.0 + math.exp(-beta * total)))
    return scores


def token_log_ratios(model, reference, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(token i) - log pi_ref(token i) at every position i >= 1 (0 at position 0)."""
    import torch

    def logprobs(network) -> torch.Tensor:
        logits = network(input_ids=ids, attention_mask=mask).logits.float()
        chosen = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        return torch.nn.functional.pad(chosen, (1, 0))

    with torch.no_grad():
        reference_logprobs = logprobs(reference)
    return (logprobs(model) - reference_logprobs) * mask


@dataclass
class ImplicitTrainingMetrics:
    examples: int
    steps: int
    first_loss: float
    final_loss: float
    seconds: float


def train_implicit(
    base: Path, examples: Sequence[StepwiseExample], steps: int, batch_size: int, learning_rate: float,
    beta: float, seed: int, device: str = "cpu",
):
    """Fine-tune a copy of `base` on outcomes alone; returns (model, tokenizer, metrics)."""
    import random

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.policies.transformers_policy import quiet_transformers
    from tasks.prm.model import max_positions

    torch.manual_seed(seed)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base).to(device)
        reference = AutoModelForCausalLM.from_pretrained(base).to(device).eval()
    limit = max_positions(model.config)
    encoded = [(text, example.is_correct) for example in examples
               if (text := encode_text(tokenizer, example.prompt, example.steps, limit)) is not None]
    if not encoded:
        raise ValueError("no training examples fit the model's context")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    rng = random.Random(seed)
    losses, began = [], time.perf_counter()
    model.train()
    for _ in range(steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)]
        width = max(len(text.input_ids) for text, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width))
        solution = torch.zeros((len(batch), width))  # the solution's tokens: where the ratio is summed
        for row, (text, _) in enumerate(batch):
            ids[row, : len(text.input_ids)] = torch.tensor(text.input_ids)
            mask[row, : len(text.input_ids)] = 1
            solution[row, text.prompt_tokens : len(text.input_ids)] = 1
        ids, mask, solution = ids.to(device), mask.to(device), solution.to(device)
        ratios = token_log_ratios(model, reference, ids, mask)
        reward = beta * (ratios * solution).sum(-1)
        outcome = torch.tensor([float(correct) for _, correct in batch], device=device)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(reward, outcome)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    setattr(model.config, CONFIG_KIND, IMPLICIT)
    setattr(model.config, CONFIG_REFERENCE, str(Path(base).resolve()))
    setattr(model.config, CONFIG_BETA, beta)
    tail = losses[-10:]
    metrics = ImplicitTrainingMetrics(len(encoded), steps, round(losses[0], 4), round(sum(tail) / len(tail), 4),
                                      round(time.perf_counter() - began, 3))
    return model, tokenizer, metrics


def is_implicit(path: Path) -> bool:
    import json

    config = Path(path) / "config.json"
    return config.exists() and json.loads(config.read_text()).get(CONFIG_KIND) == IMPLICIT


class ImplicitScorer:
    """Scores solutions with a trained implicit PRM and its reference, one forward pass of each."""

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 16) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tasks.policies.transformers_policy import quiet_transformers
        from tasks.prm.model import max_positions

        self.path = Path(path)
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path).to(device).eval()
            reference = getattr(self.model.config, CONFIG_REFERENCE)
            self.reference = AutoModelForCausalLM.from_pretrained(reference).to(device).eval()
        self.beta = float(getattr(self.model.config, CONFIG_BETA))
        self.device, self.batch_size = device, batch_size
        self.max_length = max_positions(self.model.config)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def per_step(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        import torch

        from tasks.prm.model import SolutionTooLong

        if any(not steps for _, steps in solutions):
            raise ValueError("a solution needs at least one step")
        encoded = [encode_text(self.tokenizer, problem, steps, self.max_length) for problem, steps in solutions]
        if any(text is None for text in encoded):
            raise SolutionTooLong(f"a solution does not fit the implicit PRM's context of {self.max_length} tokens")
        results: list[list[float]] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            width = max(len(text.input_ids) for text in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width))
            for row, text in enumerate(chunk):
                ids[row, : len(text.input_ids)] = torch.tensor(text.input_ids)
                mask[row, : len(text.input_ids)] = 1
            with torch.inference_mode():
                ratios = token_log_ratios(self.model, self.reference, ids.to(self.device), mask.to(self.device)).cpu()
            for row, text in enumerate(chunk):
                results.append(step_scores(ratios[row].tolist(), text.step_ends, text.prompt_tokens, self.beta))
        return results
