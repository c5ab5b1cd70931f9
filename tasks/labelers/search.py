"""OmegaPRM-style first-error search: binary search each solution for its first step with q = 0.

Per solution path (a first step down to a terminal step):
- A correct final answer makes every step positive with no rollouts (Math-Shepherd hard-label
  semantics: the solution itself is a completion from each of its prefixes that reached the answer).
- Otherwise the first error lies in [lo, hi]: hi is the final step when it states a (wrong) answer,
  else one past the end (maybe no prefix has q = 0). The search probes the middle prefix with
  k rollouts: if some rollout reaches the answer, the first error is later (lo = mid + 1); if none
  does, it is at or before mid (hi = mid). It stops when lo == hi: the first error, or none (-1)
  when that is one past the end. At most floor(log2(hi - lo)) + 1 probes, so ceil(log2 L) + 1 for
  L steps.

Labels: steps before the first error are positive; the first-error step is negative; the steps
after it are negative too, because their prefixes contain the error (OmegaPRM's "first error"
semantics, not a per-step verdict: a later step that recovers is still labelled negative). A probed
step's q is its measured share and n, n_correct count its rollouts. An unprobed step's q is the
nearest measured bound (the closest positive probe at or after it, or the closest zero at or before
it), with n = n_correct = 0 and `reason` naming the step it was inferred from.

Reuse: every probe is kept as rollouts (labeler "search"), i.e. as branches of the tree, and in a
cache keyed by node id for the whole call. Shared prefixes are the same node, so a node probed for
one solution is never probed again for another: the later search applies the cached result for
free (`SolutionTrace.reused_probes`). Nodes on a correct solution and final steps that state an
answer are evidence too, at no cost. Before each probe, cached evidence inside [lo, hi) is applied
first, the one nearest the middle first. Searches run in lock-step rounds so that each round's
probes go to the policy in batches.

One label per node: evidence about the node itself (a probe, its stated answer, a correct solution
through it) wins; otherwise the first solution in terminal-id order that inferred it decides
(`SearchOutcome.disagreements` counts the nodes other solutions would have labelled differently).
Noise: q is estimated, so a wrong step whose true q is small but nonzero can get a lucky correct
rollout and the search moves on past it, reporting a later first error; a correct step with small
q can likewise come out 0. This is inherent to the method and shared with exhaustive mc.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from schemas.records import Node, StepLabel
from tasks.ids import content_id
from tasks.labelers.base import LabelRequest, LabelResult, Progress
from tasks.labelers.mc import CONTEXT_FULL, label_mc, label_targets, outcome_label
from tasks.policies.base import Policy

LABELER = "search"


@dataclass(frozen=True)
class Evidence:
    """What is known about one prefix: whether some completion from it reaches the answer."""

    node_id: str
    kind: str  # "probe" (k rollouts), "answer" (the step states the final answer), "solution" (on a correct
    # solution), "context" (the prefix fills the policy's context: nothing can continue it), or "verdict" (a
    # verifier called the step invalid: tasks.labelers.adaptive)
    q: float
    n: int
    n_correct: int
    generated_tokens: int
    detail: str = ""  # a verdict's verifier and evidence

    @property
    def reaches(self) -> bool:
        return self.q > 0

    def describe(self) -> str:
        if self.kind == "probe":
            return f"{self.n_correct} of {self.n} completions correct"
        if self.kind == "context":
            return "the prefix fills the policy's context: no completion can continue it"
        if self.kind == "answer":
            return "the step states the final answer, " + ("correct" if self.reaches else "wrong")
        if self.kind == "verdict":
            return self.detail
        return "a solution through this step reaches the answer"


@dataclass
class SolutionTrace:
    """One solution's search: its range, the evidence it applied (by step index) and its cost."""

    solution_id: str  # the terminal node id
    path: list[Node]
    lo: int
    hi: int  # a step known to have q = 0, or len(path) while none is known
    applied: dict[int, Evidence] = field(default_factory=dict)
    fresh_probes: int = 0  # probes spent for this solution
    reused_probes: int = 0  # probes another solution had already paid for

    @property
    def done(self) -> bool:
        return self.lo >= self.hi

    @property
    def first_error(self) -> int:
        """The 0-based index of the first step with q = 0, or -1 if there is none."""
        if not self.done:
            raise RuntimeError(f"the search of {self.solution_id} has not finished")
        return self.lo if self.lo < len(self.path) else -1


@dataclass
class SearchOutcome:
    result: LabelResult
    traces: list[SolutionTrace]
    disagreements: int = 0


def middle(lo: int, hi: int) -> int:
    """The probe position for the range [lo, hi).

    >>> middle(0, 5), middle(3, 4)
    (2, 3)
    """
    return (lo + hi) // 2


def narrow(lo: int, hi: int, index: int, reaches: bool) -> tuple[int, int]:
    """The range after learning whether the prefix through step `index` can reach the answer.

    >>> narrow(0, 5, 2, True), narrow(0, 5, 2, False)
    ((3, 5), (0, 2))
    """
    if not lo <= index < hi:
        raise ValueError(f"step {index} is outside the search range [{lo}, {hi})")
    return (index + 1, hi) if reaches else (lo, index)


def solution_paths(nodes: dict[str, Node], wanted: set[str]) -> list[list[Node]]:
    """Root-to-terminal paths through at least one wanted node, ordered by terminal id."""
    paths = []
    for leaf in sorted((node for node in nodes.values() if node.is_terminal), key=lambda node: node.node_id):
        path: list[Node] = []
        current: Node | None = leaf
        while current is not None:
            path.append(current)
            current = nodes.get(current.parent_id) if current.parent_id else None
        path.reverse()
        if any(node.node_id in wanted for node in path):
            paths.append(path)
    return paths


def free_evidence(nodes: dict[str, Node]) -> dict[str, Evidence]:
    """Evidence that costs no rollouts: stated answers, and every step of a correct solution."""
    cache: dict[str, Evidence] = {}
    for node in nodes.values():
        if node.is_terminal and node.final_answer is not None:
            q = 1.0 if node.is_correct else 0.0
            cache[node.node_id] = Evidence(node.node_id, "answer", q, 0, 0, 0)
    for node in nodes.values():
        if not (node.is_terminal and node.is_correct):
            continue
        current = nodes.get(node.parent_id) if node.parent_id else None
        while current is not None:
            known = cache.get(current.node_id)
            if known is None:
                cache[current.node_id] = Evidence(current.node_id, "solution", 1.0, 0, 0, 0)
            elif known.kind == "solution":
                break  # this node's ancestors were marked from another correct solution
            current = nodes.get(current.parent_id) if current.parent_id else None
    return cache


def apply_known(trace: SolutionTrace, cache: dict[str, Evidence], spent_by: dict[str, str]) -> None:
    """Narrow the range with evidence already in the cache, the one nearest the middle first."""
    while not trace.done:
        known = [index for index in range(trace.lo, trace.hi) if trace.path[index].node_id in cache]
        if not known:
            return
        mid = middle(trace.lo, trace.hi)
        index = min(known, key=lambda position: (abs(position - mid), position))
        evidence = cache[trace.path[index].node_id]
        if evidence.kind == "probe":
            if spent_by[evidence.node_id] == trace.solution_id:
                trace.fresh_probes += 1
            else:
                trace.reused_probes += 1
        trace.applied[index] = evidence
        trace.lo, trace.hi = narrow(trace.lo, trace.hi, index, evidence.reaches)


def search_first_errors(
    policy: Policy, request: LabelRequest, batch_size: int | None = None, progress: Progress | None = None
) -> SearchOutcome:
    """Search every solution through a node of `request.to_label`; label those nodes."""
    wanted = {node.node_id for node in request.to_label}
    paths = solution_paths(request.nodes, wanted)
    cache = free_evidence(request.nodes)
    spent_by: dict[str, str] = {}
    result = LabelResult()
    traces = [SolutionTrace(path[-1].node_id, path, 0, len(path)) for path in paths]
    reported: set[str] = set()

    def report(finished: Sequence[SolutionTrace]) -> None:
        settled = {node.node_id for trace in finished for node in trace.path if node.node_id in wanted}
        if progress and settled - reported:
            progress(len(settled - reported))
        reported.update(settled)

    active = traces
    while active:
        requests: dict[str, Node] = {}
        for trace in active:
            apply_known(trace, cache, spent_by)
            if not trace.done:
                node = trace.path[middle(trace.lo, trace.hi)]
                requests.setdefault(node.node_id, node)
                spent_by.setdefault(node.node_id, trace.solution_id)
        report([trace for trace in active if trace.done])
        if requests:
            probe(policy, request, list(requests.values()), cache, result, batch_size)
        active = [trace for trace in active if not trace.done]

    # A node on no solution path (tasks.tree never makes one) is labelled by a probe of its own.
    on_paths = {node.node_id for path in paths for node in path}
    loose = [node for node in request.to_label if node.node_id not in on_paths]
    unprobed = [node for node in loose if node.node_id not in cache]
    if unprobed:
        probe(policy, request, unprobed, cache, result, batch_size)
    result.labels, disagreements = _resolve_labels(traces, cache, wanted, loose)
    if progress and len(wanted) > len(reported):
        progress(len(wanted) - len(reported))
    return SearchOutcome(result, traces, disagreements)


def probe(
    policy: Policy,
    request: LabelRequest,
    nodes: list[Node],
    cache: dict[str, Evidence],
    result: LabelResult,
    batch_size: int | None,
    labeler: str = LABELER,
) -> None:
    """k rollouts from each node's prefix, kept as rollouts and cached as evidence."""
    targets = label_targets(nodes, request.nodes, request.problems, request.prompt_format)
    probed = label_mc(policy, targets, request.rollouts_per_step, request.params, batch_size, labeler=labeler,
                      prompt_format=request.prompt_format)
    result.rollouts.extend(probed.rollouts)
    result.usage.add(probed.usage)
    for label in probed.labels:
        kind = "probe" if label.n > 0 else ("context" if label.reason.startswith(CONTEXT_FULL) else "answer")
        cache[label.node_id] = Evidence(label.node_id, kind, label.q, label.n, label.n_correct, label.generated_tokens)


def _resolve_labels(
    traces: list[SolutionTrace], cache: dict[str, Evidence], wanted: set[str], loose: list[Node]
) -> tuple[list[StepLabel], int]:
    chosen: dict[str, StepLabel] = {}
    disagreements: set[str] = set()
    for trace in traces:
        for index, node in enumerate(trace.path):
            if node.node_id not in wanted:
                continue
            if node.node_id in cache:
                chosen.setdefault(node.node_id, direct_label(node, cache[node.node_id]))
                continue
            label = inferred_label(node, index, trace)
            earlier = chosen.setdefault(node.node_id, label)
            if earlier.hard != label.hard:
                disagreements.add(node.node_id)
    for node in loose:
        chosen.setdefault(node.node_id, direct_label(node, cache[node.node_id]))
    return sorted(chosen.values(), key=lambda label: label.node_id), len(disagreements)


def direct_label(node: Node, evidence: Evidence) -> StepLabel:
    """The label of a node from evidence about its own prefix."""
    if evidence.kind == "answer":
        return outcome_label(node, LABELER)
    return StepLabel(
        label_id=content_id("label", node.node_id, LABELER),
        node_id=node.node_id,
        labeler=LABELER,
        q=evidence.q,
        hard=evidence.reaches,
        n=evidence.n,
        n_correct=evidence.n_correct,
        generated_tokens=evidence.generated_tokens,
        reason=f"search: {'probe' if evidence.kind == 'probe' else 'no rollouts'}: {evidence.describe()}",
    )


def inferred_label(node: Node, index: int, trace: SolutionTrace) -> StepLabel:
    """The label of an unprobed step from the search's result and its nearest measured bound."""
    first_error = trace.first_error
    positive = first_error == -1 or index < first_error
    if positive:  # the closest applied positive at or after the step
        bound = min(j for j, evidence in trace.applied.items() if j >= index and evidence.reaches)
    else:  # the closest applied zero at or before it (the first error itself at worst)
        bound = max(j for j, evidence in trace.applied.items() if first_error <= j <= index and not evidence.reaches)
    evidence = trace.applied[bound]
    return StepLabel(
        label_id=content_id("label", node.node_id, LABELER),
        node_id=node.node_id,
        labeler=LABELER,
        q=evidence.q,
        hard=positive,
        n=0,
        n_correct=0,
        generated_tokens=0,
        reason=f"search: inferred from probe at step {bound + 1} ({evidence.describe()})",
    )


class FirstErrorSearchLabeler:
    """OmegaPRM's binary search for the first wrong step, k rollouts per probe, probes reused."""

    name = LABELER

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size  # prefixes per policy call; None: as many as the policy asks for

    def label(self, policy: Policy, request: LabelRequest, progress: Progress | None = None) -> LabelResult:
        return search_first_errors(policy, request, self.batch_size, progress).result


# --- Balanced examples --------------------------------------------------------------------------


@dataclass(frozen=True)
class BalancedSelection:
    kept: pl.DataFrame
    rejected: pl.DataFrame  # the same columns plus `reason`


def balance_solutions(frame: pl.DataFrame, seed: int) -> BalancedSelection:
    """As many solutions with a negative step as solutions labelled positive throughout.

    OmegaPRM balances positive and negative examples; in the stepwise dataset (one row per
    solution, tasks.dataset) the unit is the solution, so this balances rows whose `labels`
    contain a False (a first error was found) against rows whose labels are all True. Every row of
    the smaller class is kept; the larger class is sampled down, by a hash of seed and solution id,
    so the choice depends on neither row order nor the other rows. Dropped rows are returned with
    a reason, not lost.
    """
    if frame.is_empty():
        return BalancedSelection(frame, frame.with_columns(reason=pl.lit(None, pl.String)))
    has_negative = frame["labels"].list.eval(pl.element().not_()).list.any()
    ranked = frame.with_columns(
        _negative=has_negative,
        _rank=pl.Series([content_id("balance", seed, solution) for solution in frame["solution_id"]], dtype=pl.String),
    )
    negatives = ranked.filter(pl.col("_negative")).height
    positives = ranked.height - negatives
    keep = min(negatives, positives)
    ranked = ranked.with_columns(_order=pl.col("_rank").rank("ordinal").over("_negative"))
    kept = ranked.filter(pl.col("_order") <= keep)
    majority = "negative" if negatives > positives else "positive"
    rejected = ranked.filter(pl.col("_order") > keep).with_columns(
        reason=pl.lit(f"balance: {majority} solutions sampled down to {keep} (seed {seed})")
    )
    helpers = ["_negative", "_rank", "_order"]
    return BalancedSelection(
        kept.drop(helpers).sort("solution_id"), rejected.drop(helpers).sort("solution_id")
    )
