"""The one interface every step labeller implements, and what passes through it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from schemas.records import Node, PolicyUsage, Problem, Rollout, SamplingParams, StepLabel, Verdict
from tasks.policies.base import Policy
from tasks.prompts import PLAIN_FORMAT, Prompt, PromptFormat
from tasks.tree import path_steps

Progress = Callable[[int], None]


@dataclass(frozen=True)
class LabelRequest:
    """The tree to label: every node known so far, and the ones that still lack this label.

    `verdicts` holds the verifiers' verdicts per node id where they ran first (the adaptive
    labeller reads them; the others ignore them).
    """

    nodes: dict[str, Node]
    problems: dict[str, Problem]
    to_label: list[Node]
    rollouts_per_step: int
    params: SamplingParams
    prompt_format: PromptFormat = PLAIN_FORMAT  # how prefixes are written and completions read
    verdicts: Mapping[str, Sequence[Verdict]] = field(default_factory=dict)

    def prefix(self, node: Node) -> Prompt:
        """The prompt plus the steps up to and including `node`: what a completion continues."""
        return self.prompt_format.prefix(self.problems[node.problem_id], path_steps(node, self.nodes))

    def reference(self, node: Node) -> str:
        return self.problems[node.problem_id].answer


@dataclass
class LabelResult:
    rollouts: list[Rollout] = field(default_factory=list)
    labels: list[StepLabel] = field(default_factory=list)
    usage: PolicyUsage = field(default_factory=PolicyUsage)


class Labeler(Protocol):
    name: str

    def label(self, policy: Policy, request: LabelRequest, progress: Progress | None = None) -> LabelResult:
        """Labels (and the rollouts spent on them) for the request's nodes; records the cost."""
        ...
