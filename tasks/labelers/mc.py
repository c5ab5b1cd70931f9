"""Math-Shepherd Monte Carlo labels: from each step's prefix, sample k completions.

q (the soft label) is the share of completions that reach the reference answer; the hard label is
q > 0. A step that states the final answer itself is labelled by that answer's check, with no
rollouts (n = 0): no completion could change it. A step whose prefix fills the policy's context
(a solution that ran to the end of its budget) is labelled 0 with no rollouts (n = 0) and a reason
that says so: the policy cannot continue it, so no completion from it reaches the answer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from schemas.records import Node, PolicyUsage, Problem, Rollout, SamplingParams, StepLabel
from tasks.answers import answers_match
from tasks.fit import Overflow, prompts_without_room
from tasks.ids import content_id
from tasks.labelers.base import LabelRequest, LabelResult, Progress
from tasks.policies.base import Policy, prompts_per_call
from tasks.prompts import PLAIN_FORMAT, Prompt, PromptFormat
from tasks.tree import path_steps

LABELER = "mc"
CONTEXT_FULL = "context full"


@dataclass(frozen=True)
class LabelTarget:
    """A node to label, with the prefix a completion continues and the answer it must reach."""

    node: Node
    prefix: Prompt
    reference: str


def mc_estimate(n_correct: int, n: int) -> tuple[float, bool]:
    """(soft, hard) labels from k rollouts.

    >>> mc_estimate(3, 4)
    (0.75, True)
    >>> mc_estimate(0, 8)
    (0.0, False)
    """
    if n <= 0 or not 0 <= n_correct <= n:
        raise ValueError(f"need 0 <= n_correct <= n and n > 0, got {n_correct} of {n}")
    q = n_correct / n
    return q, q > 0


def label_targets(nodes: Sequence[Node], all_nodes: dict[str, Node], problems: dict[str, Problem],
                  prompt_format: PromptFormat = PLAIN_FORMAT) -> list[LabelTarget]:
    targets = []
    for node in nodes:
        problem = problems[node.problem_id]
        prefix = prompt_format.prefix(problem, path_steps(node, all_nodes))
        targets.append(LabelTarget(node, prefix, problem.answer))
    return targets


@lru_cache(maxsize=65_536)
def is_correct_answer(answer: str | None, reference: str) -> bool:
    return answers_match(answer, reference)


def outcome_label(node: Node, labeler: str = LABELER) -> StepLabel:
    correct = bool(node.is_correct)
    return StepLabel(
        label_id=content_id("label", node.node_id, labeler),
        node_id=node.node_id,
        labeler=labeler,
        q=1.0 if correct else 0.0,
        hard=correct,
        n=0,
        n_correct=0,
        generated_tokens=0,
        reason="outcome: the step states the final answer",
    )


def context_full_label(node: Node, overflow: Overflow, policy: str, labeler: str = LABELER) -> StepLabel:
    return StepLabel(
        label_id=content_id("label", node.node_id, labeler),
        node_id=node.node_id,
        labeler=labeler,
        q=0.0,
        hard=False,
        n=0,
        n_correct=0,
        generated_tokens=0,
        reason=f"{CONTEXT_FULL}: the prefix has {overflow.tokens} tokens and policy {policy}'s context is "
               f"{overflow.context}: no completion can continue it",
    )


def label_mc(
    policy: Policy,
    targets: Sequence[LabelTarget],
    rollouts_per_step: int,
    params: SamplingParams,
    batch_size: int | None = None,
    progress: Progress | None = None,
    labeler: str = LABELER,
    prompt_format: PromptFormat = PLAIN_FORMAT,
) -> LabelResult:
    """Monte Carlo labels for every target; rollouts are kept for the rollouts table. Completions'
    answers are read the way `prompt_format` reads them.

    Targets go to the policy `batch_size` prefixes per call (by default as many as the policy asks
    for), in the order given: a tree's prefixes stay together, so an engine's prefix cache hits.
    """
    batch_size = batch_size or prompts_per_call(policy)
    result = LabelResult()
    to_sample: list[LabelTarget] = []
    for target in targets:
        if target.node.is_terminal and target.node.final_answer is not None:
            result.labels.append(outcome_label(target.node, labeler))
        else:
            to_sample.append(target)
    full = prompts_without_room(policy, [target.prefix for target in to_sample])
    for index in sorted(full):
        result.labels.append(context_full_label(to_sample[index].node, full[index], policy.name, labeler))
    to_sample = [target for index, target in enumerate(to_sample) if index not in full]
    if progress and len(to_sample) < len(targets):
        progress(len(targets) - len(to_sample))
    for start in range(0, len(to_sample), batch_size):
        batch = to_sample[start : start + batch_size]
        began = time.perf_counter()
        generations = policy.generate([t.prefix for t in batch], rollouts_per_step, params)
        result.usage.add(PolicyUsage(len(batch), 0, time.perf_counter() - began, 1))
        for target, outputs in zip(batch, generations, strict=True):
            node_rollouts = []
            for index, generation in enumerate(outputs):
                answer = prompt_format.answer(generation.text)
                node_rollouts.append(
                    Rollout(
                        rollout_id=content_id("rollout", target.node.node_id, labeler, params.seed, index),
                        node_id=target.node.node_id,
                        labeler=labeler,
                        sample_index=index,
                        completion=generation.text,
                        final_answer=answer,
                        is_correct=is_correct_answer(answer, target.reference),
                        generated_tokens=generation.generated_tokens,
                        finish_reason=generation.finish_reason,
                    )
                )
            n_correct = sum(rollout.is_correct for rollout in node_rollouts)
            q, hard = mc_estimate(n_correct, len(node_rollouts))
            tokens = sum(rollout.generated_tokens for rollout in node_rollouts)
            result.usage.generated_tokens += tokens
            result.rollouts.extend(node_rollouts)
            result.labels.append(
                StepLabel(
                    label_id=content_id("label", target.node.node_id, labeler),
                    node_id=target.node.node_id,
                    labeler=labeler,
                    q=q,
                    hard=hard,
                    n=len(node_rollouts),
                    n_correct=n_correct,
                    generated_tokens=tokens,
                    reason=f"monte carlo: {n_correct} of {len(node_rollouts)} completions correct",
                )
            )
        if progress:
            progress(len(batch))
    return result


class MonteCarloLabeler:
    """Exhaustive Math-Shepherd estimation: k rollouts from every step's prefix."""

    name = LABELER

    def label(self, policy: Policy, request: LabelRequest, progress: Progress | None = None) -> LabelResult:
        targets = label_targets(request.to_label, request.nodes, request.problems, request.prompt_format)
        return label_mc(policy, targets, request.rollouts_per_step, request.params, progress=progress,
                        prompt_format=request.prompt_format)
