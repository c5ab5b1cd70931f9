"""How often a policy's full solutions reach the right final answer: the first check of a policy."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.records import Problem, SamplingParams
from tasks.answers import answers_match, extract_answer
from tasks.policies.base import Policy
from tasks.text_format import prompt_for


def solve_rate(
    policy: Policy, problems: Sequence[Problem], samples_per_problem: int, params: SamplingParams
) -> float:
    """The fraction of sampled solutions whose stated answer matches the problem's answer.

    A solution that states no answer, or is cut off before it does, counts as wrong.
    """
    if not problems:
        raise ValueError("solve_rate needs at least one problem")
    prompts = [prompt_for(problem.question) for problem in problems]
    samples = policy.generate(prompts, samples_per_problem, params)
    correct = sum(
        answers_match(extract_answer(generation.text), problem.answer)
        for problem, generations in zip(problems, samples)
        for generation in generations
    )
    return correct / (len(problems) * samples_per_problem)
