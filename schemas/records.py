"""Typed records passed between tasks. Tables hold their rows; these hold one item in flight."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """A seed problem with a verifiable final answer."""

    problem_id: str
    question: str
    answer: str
    source: str
    reference_steps: tuple[str, ...] = ()
    source_file: str | None = None
    source_row: int | None = None


@dataclass(frozen=True)
class QuarantinedRow:
    """An input row that failed validation, kept with the reason instead of being dropped."""

    source_file: str
    source_row: int | None
    raw: str
    reason: str


@dataclass(frozen=True)
class Generation:
    """One sampled continuation, with what it cost."""

    text: str
    generated_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 160
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Node:
    """One step of a solution: its id hashes its parent id and its text."""

    node_id: str
    problem_id: str
    parent_id: str | None
    depth: int
    step_text: str
    is_terminal: bool
    final_answer: str | None = None
    is_correct: bool | None = None
    generated_tokens: int = 0


@dataclass(frozen=True)
class Rollout:
    """A completion sampled from the prefix that ends at a node."""

    rollout_id: str
    node_id: str
    labeler: str
    sample_index: int
    completion: str
    final_answer: str | None
    is_correct: bool
    generated_tokens: int
    finish_reason: str


@dataclass(frozen=True)
class StepLabel:
    label_id: str
    node_id: str
    labeler: str
    q: float
    hard: bool
    n: int
    n_correct: int
    generated_tokens: int
    reason: str
    progress: float | None = None  # q_t - q_{t-1}, set by the progress labeller only


@dataclass
class PolicyUsage:
    """What a stage spent inside the policy."""

    prompts: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    calls: int = 0
    engine_restarts: int = 0  # times the policy's engine died and was restarted mid-stage

    def add(self, other: "PolicyUsage") -> None:
        self.prompts += other.prompts
        self.generated_tokens += other.generated_tokens
        self.seconds += other.seconds
        self.calls += other.calls
        self.engine_restarts += other.engine_restarts


@dataclass
class Solution:
    """A sampled solution split into steps, before it becomes nodes."""

    problem_id: str
    steps: list[str] = field(default_factory=list)
    final_answer: str | None = None
    is_correct: bool = False
    generated_tokens: int = 0


@dataclass(frozen=True)
class Verdict:
    """A verifier's three-valued judgement of one step. "Could not check" is unknown, never invalid."""

    verifier: str
    verdict: str  # "valid", "invalid" or "unknown"
    evidence: str = ""
    reason: str = ""
    ms: float = 0.0
