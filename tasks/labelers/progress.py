"""Progress (advantage) labels, after Setlur et al., "Rewarding Progress": q_t - q_{t-1}.

A step's progress is how much it changed the chance of eventually reaching the right answer: the
Monte Carlo q of the prefix that ends at the step, minus that of the prefix just before it. For a
first step the prefix before it is the bare prompt, whose q_0 is estimated once per problem with k
rollouts from the prompt. Everything else is the mc machinery (tasks.labelers.mc.label_mc) run
under the labeler name "progress": q is q_t, hard is q_t > 0 (as in mc), and a step that states the
final answer gets q_t from that answer with no rollouts.

A parent that is not itself being labelled (it already has a progress label) is estimated again
for its q; its rollouts are kept, under the same content-hash ids as before, so nothing is stored
twice. The prompt's rollouts belong to no node, so they are not rollouts-table rows: their tokens
count in `usage`, and q_0 with its counts appears in each first step's `reason`
(`ProgressOutcome.prompts` holds them).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.records import PolicyUsage, Problem, SamplingParams, StepLabel
from tasks.ids import content_id
from tasks.labelers.base import LabelRequest, LabelResult, Progress
from tasks.labelers.mc import is_correct_answer, label_mc, label_targets
from tasks.policies.base import Policy, prompts_per_call
from tasks.prompts import PLAIN_FORMAT, PromptFormat

LABELER = "progress"


@dataclass(frozen=True)
class PromptEstimate:
    """q_0: the share of k completions from the bare prompt that reach the answer."""

    problem_id: str
    q: float
    n: int
    n_correct: int
    generated_tokens: int


@dataclass
class ProgressOutcome:
    result: LabelResult
    prompts: dict[str, PromptEstimate]


def progress_of(q: float, q_before: float) -> float:
    """The step's progress: the change in the chance of reaching the answer.

    >>> progress_of(0.75, 0.5), progress_of(0.0, 0.25)
    (0.25, -0.25)
    """
    return q - q_before


def estimate_prompts(
    policy: Policy, problems: Sequence[Problem], rollouts: int, params: SamplingParams, batch_size: int | None = None,
    prompt_format: PromptFormat = PLAIN_FORMAT,
) -> tuple[dict[str, PromptEstimate], PolicyUsage]:
    """q_0 of each problem's bare prompt, from `rollouts` completions."""
    batch_size = batch_size or prompts_per_call(policy)
    estimates: dict[str, PromptEstimate] = {}
    usage = PolicyUsage()
    for start in range(0, len(problems), batch_size):
        batch = problems[start : start + batch_size]
        began = time.perf_counter()
        generations = policy.generate([prompt_format.prompt(problem) for problem in batch], rollouts, params)
        usage.add(PolicyUsage(len(batch), 0, time.perf_counter() - began, 1))
        for problem, outputs in zip(batch, generations, strict=True):
            if not outputs:
                raise ValueError(f"the policy returned no completions for the prompt of {problem.problem_id}")
            n_correct = sum(is_correct_answer(prompt_format.answer(g.text), problem.answer) for g in outputs)
            tokens = sum(g.generated_tokens for g in outputs)
            usage.generated_tokens += tokens
            estimates[problem.problem_id] = PromptEstimate(
                problem.problem_id, n_correct / len(outputs), len(outputs), n_correct, tokens
            )
    return estimates, usage


def label_progress(
    policy: Policy, request: LabelRequest, batch_size: int | None = None, progress: Progress | None = None
) -> ProgressOutcome:
    """Progress labels for `request.to_label`, with the q estimates they are built on."""
    wanted = {node.node_id for node in request.to_label}
    parents = sorted(
        {node.parent_id for node in request.to_label if node.parent_id and node.parent_id not in wanted}
    )
    missing = [parent for parent in parents if parent not in request.nodes]
    if missing:
        raise ValueError(f"{len(missing)} parent node(s) are not in the request, e.g. {missing[0]}: pass the whole tree")
    extra = [request.nodes[parent] for parent in parents]
    remaining = [len(request.to_label)]

    def report(count: int) -> None:  # the parents' estimates are not part of the stage's total
        done = min(count, remaining[0])
        remaining[0] -= done
        if progress and done:
            progress(done)

    targets = label_targets(list(request.to_label) + extra, request.nodes, request.problems, request.prompt_format)
    estimated = label_mc(
        policy, targets, request.rollouts_per_step, request.params, batch_size, report, labeler=LABELER,
        prompt_format=request.prompt_format,
    )
    root_problems = sorted({node.problem_id for node in request.to_label if node.parent_id is None})
    prompts, prompt_usage = estimate_prompts(
        policy, [request.problems[pid] for pid in root_problems], request.rollouts_per_step, request.params, batch_size,
        request.prompt_format,
    )
    result = LabelResult(rollouts=estimated.rollouts, usage=estimated.usage)
    result.usage.add(prompt_usage)
    by_node = {label.node_id: label for label in estimated.labels}
    for node in request.to_label:
        own = by_node[node.node_id]
        if node.parent_id is None:
            before = prompts[node.problem_id]
            q_before, source = before.q, f"prompt, {before.n_correct} of {before.n}"
        else:
            parent = by_node[node.parent_id]
            q_before, source = parent.q, f"previous step, {_counts(parent)}"
        own_source = _counts(own)
        result.labels.append(
            StepLabel(
                label_id=content_id("label", node.node_id, LABELER),
                node_id=node.node_id,
                labeler=LABELER,
                q=own.q,
                hard=own.hard,
                n=own.n,
                n_correct=own.n_correct,
                generated_tokens=own.generated_tokens,
                reason=f"progress: q_t {own.q:.3f} ({own_source}) - q_t-1 {q_before:.3f} ({source})",
                progress=progress_of(own.q, q_before),
            )
        )
    return ProgressOutcome(result, prompts)


def _counts(label: StepLabel) -> str:
    return "the stated answer" if label.n == 0 else f"{label.n_correct} of {label.n}"


class ProgressLabeler:
    """Progress labels q_t - q_{t-1} beside the Monte Carlo q they are built on."""

    name = LABELER

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size  # prompts per policy call; None: as many as the policy asks for

    def label(self, policy: Policy, request: LabelRequest, progress: Progress | None = None) -> LabelResult:
        return label_progress(policy, request, self.batch_size, progress).result
