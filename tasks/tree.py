"""Sample solutions and turn them into a rollout tree: one node per step, shared prefixes once."""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Sequence

from schemas.records import Node, PolicyUsage, Problem, SamplingParams, Solution
from tasks.answers import answers_match
from tasks.ids import node_id
from tasks.policies.base import Policy, prompts_per_call
from tasks.prompts import PLAIN_FORMAT, PromptFormat

Progress = Callable[[int], None]  # called with the number of items just finished


def sample_solutions(
    policy: Policy,
    problems: Sequence[Problem],
    samples: int,
    params: SamplingParams,
    boundary: str | None = None,
    batch_size: int | None = None,
    progress: Progress | None = None,
    prompt_format: PromptFormat | None = None,
) -> tuple[list[Solution], PolicyUsage]:
    """`samples` solutions per problem, split into steps, with the final answer checked.

    The prompt, the step boundary and the answer reader are `prompt_format`'s (by default the plain
    format, split at `boundary` when given). Problems go to the policy `batch_size` per call (by
    default as many as the policy asks for).
    """
    if prompt_format is None:
        prompt_format = replace(PLAIN_FORMAT, step_boundary=boundary) if boundary else PLAIN_FORMAT
    batch_size = batch_size or prompts_per_call(policy)
    solutions: list[Solution] = []
    usage = PolicyUsage()
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        began = time.perf_counter()
        generations = policy.generate([prompt_format.prompt(p) for p in batch], samples, params)
        usage.add(PolicyUsage(len(batch), 0, time.perf_counter() - began, 1))
        for problem, outputs in zip(batch, generations, strict=True):
            for generation in outputs:
                usage.generated_tokens += generation.generated_tokens
                answer = prompt_format.answer(generation.text)
                solutions.append(
                    Solution(
                        problem_id=problem.problem_id,
                        steps=prompt_format.split(generation.text),
                        final_answer=answer,
                        is_correct=answers_match(answer, problem.answer),
                        generated_tokens=generation.generated_tokens,
                    )
                )
        if progress:
            progress(len(batch))
    return solutions, usage


def solution_nodes(solution: Solution) -> list[Node]:
    """The nodes along one solution, root first. The last carries the answer and its check."""
    nodes: list[Node] = []
    parent: str | None = None
    for depth, step in enumerate(solution.steps, start=1):
        is_last = depth == len(solution.steps)
        identity = node_id(solution.problem_id, parent, step)
        nodes.append(
            Node(
                node_id=identity,
                problem_id=solution.problem_id,
                parent_id=parent,
                depth=depth,
                step_text=step,
                is_terminal=is_last,
                final_answer=solution.final_answer if is_last else None,
                is_correct=solution.is_correct if is_last else None,
                generated_tokens=solution.generated_tokens if is_last else 0,
            )
        )
        parent = identity
    return nodes


def build_tree(solutions: Sequence[Solution]) -> list[Node]:
    """All solutions' nodes with each shared prefix stored once.

    A step can end one sample and continue in another; it is terminal if any sample ended there.
    """
    merged: dict[str, Node] = {}
    for solution in solutions:
        for node in solution_nodes(solution):
            stored = merged.get(node.node_id)
            if stored is None or (node.is_terminal and not stored.is_terminal):
                merged[node.node_id] = node
    return list(merged.values())


def path_steps(node: Node, nodes_by_id: dict[str, Node]) -> list[str]:
    """The step texts from the root down to and including `node`."""
    steps: list[str] = []
    current: Node | None = node
    while current is not None:
        steps.append(current.step_text)
        current = nodes_by_id.get(current.parent_id) if current.parent_id else None
    return steps[::-1]
