"""Score solutions with a trained PRM: per-step P(step is fine) and the usual aggregates.

>>> aggregate([1.0, 0.5, 0.75])
StepScores(per_step=[1.0, 0.5, 0.75], min=0.5, last=0.75, product=0.375, mean=0.75)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.policies.transformers_policy import quiet_transformers
from tasks.prm.model import (
    STEP_TOKEN, device_for, encode_solution, label_kind_of, max_positions, reads_prompt_separator, step_probabilities,
)

AGGREGATIONS = ("min", "last", "product", "mean")


@dataclass(frozen=True)
class StepScores:
    per_step: list[float]
    min: float
    last: float
    product: float
    mean: float

    def aggregated(self, how: str) -> float:
        if how not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation '{how}': use one of {', '.join(AGGREGATIONS)}")
        return getattr(self, how)


def aggregate(per_step: Sequence[float]) -> StepScores:
    """The aggregates of a solution's step scores (at least one step)."""
    if not per_step:
        raise ValueError("a solution needs at least one step score")
    values = [float(value) for value in per_step]
    return StepScores(
        per_step=values,
        min=min(values),
        last=values[-1],
        product=math.prod(values),
        mean=sum(values) / len(values),
    )


class PRMScorer:
    """A trained PRM directory, loaded once; scores one solution or many (batched)."""

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int = 16) -> None:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        import tasks.prm.modeling  # noqa: F401 - registers StepRewardModel with the Auto classes
        from tasks.prm.model import set_cpu_threads

        set_cpu_threads()
        self.path = Path(path)
        if not (self.path / "config.json").exists():
            raise FileNotFoundError(f"no trained model at {self.path} (config.json missing)")
        self.device = device_for(device)
        self.batch_size = batch_size
        from tasks.prm.implicit import ImplicitScorer, is_implicit

        self.implicit = ImplicitScorer(self.path, self.device, batch_size) if is_implicit(self.path) else None
        if self.implicit is not None:
            self.label_kind, self.max_length = "soft", self.implicit.max_length
            return
        with quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForTokenClassification.from_pretrained(self.path).to(self.device).eval()
        if STEP_TOKEN not in self.tokenizer.get_vocab():
            raise ValueError(f"{self.path} has no {STEP_TOKEN} token: it was not trained by prmforge train")
        self.label_kind = label_kind_of(self.model.config)
        self.max_length = max_positions(self.model.config)
        self.prompt_separator = reads_prompt_separator(self.model.config)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def score(self, problem: str, steps: Sequence[str]) -> StepScores:
        return self.score_many([(problem, steps)])[0]

    def score_many(self, solutions: Sequence[tuple[str, Sequence[str]]]) -> list[StepScores]:
        """Scores in input order; solutions are batched by length so padding stays small."""
        import torch

        if self.implicit is not None:
            return [aggregate(per_step) for per_step in self.implicit.per_step(solutions)]

        encoded = [
            encode_solution(self.tokenizer, problem, steps, self.max_length, self.prompt_separator)
            for problem, steps in solutions
        ]
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index].input_ids))
        results: list[StepScores | None] = [None] * len(encoded)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(encoded[index].input_ids) for index in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, index in enumerate(chunk):
                length = len(encoded[index].input_ids)
                ids[row, :length] = torch.tensor(encoded[index].input_ids)
                mask[row, :length] = 1
            with torch.inference_mode():
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            for row, index in enumerate(chunk):
                positions = torch.tensor(encoded[index].separator_positions, device=logits.device)
                probabilities = step_probabilities(logits[row, positions], self.label_kind)
                results[index] = aggregate(probabilities.cpu().tolist())
        return [result for result in results if result is not None]
