"""Adaptive labels: the verifiers first, then a first-error search over what they leave open.

What a verdict decides, and what it does not:
- `invalid` decides its step: the step is wrong, so the first error is at or before it. The first
  step of a solution that some verifier calls invalid is the search's upper bound (hi), like a
  probe with no correct completion, at no rollouts.
- `valid` and `unknown` decide nothing. A valid verdict says the step's claims check out, not that
  the prefix can still reach the answer: a correct computation on a wrong operand, or carried on
  from a wrong value, is valid. So a step is labelled positive only on evidence that its prefix
  reaches the answer: a probe with a correct completion, a correct solution through it, or a
  stated correct answer (tasks.labelers.search's evidence).
- Rollouts are spent only on the steps before the first invalid one (the steps the verifiers leave
  undecided), by tasks.labelers.search's binary search with probe reuse. (Probing the step just
  before a verifier's bound first, to confirm the invalid step as the first error in one probe,
  spent as many rollouts as the middle on the simulated inputs, so the search stays plain.)

A solution's correct final answer makes its steps before the bound positive for free; a verifier's
bound still applies to it, so a correct answer reached through a wrong step gets its first error.

Budget: each solution may spend at most `budget` rollouts on its own probes (probes another
solution paid for are free). A search that cannot afford its next probe stops; its first error is
taken to be the bound it has (hi, the nearest step known to be wrong; -1 when none is known), and
the steps of the open range are labelled positive with a reason that says so.

Labels (labeler "adaptive"), one per node:
- evidence about the node itself decides: an invalid verdict (hard False, q 0.0, n 0, the verdict's
  verifier and evidence in `reason`), then its own probe (q measured, n its rollouts), its stated
  answer or a correct solution through it (q 1.0 or 0.0, n 0);
- otherwise its solution's first error decides (positive before it, negative from it on), and q is
  copied from the nearest evidence the search applied (as in search), with n = 0: an n = 0 q is a
  verdict, never a measurement (tasks.preferences orders pairs only by measured q).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.records import Node, StepLabel, Verdict
from tasks.ids import content_id
from tasks.labelers.base import LabelRequest, LabelResult, Progress
from tasks.labelers.mc import outcome_label
from tasks.labelers.search import Evidence, SolutionTrace, apply_known, free_evidence, middle, probe, solution_paths
from tasks.policies.base import Policy
from tasks.verifiers.base import INVALID

LABELER = "adaptive"
DEFAULT_BUDGET = 32  # rollouts per solution: four probes at k = 8, enough for a 2-15 step binary search at k = 4
DEFAULT_VERIFIERS = ("arith", "z3")  # run when the request carries no verdicts


def deciding_verdict(verdicts: Sequence[Verdict]) -> Verdict | None:
    """The verdict that decides a step: the first `invalid` one; None when none is invalid.

    >>> deciding_verdict([Verdict("arith", "valid"), Verdict("z3", "invalid", evidence="2 + 2 != 5")]).verifier
    'z3'
    >>> deciding_verdict([Verdict("arith", "valid"), Verdict("z3", "unknown")]) is None
    True
    """
    return next((verdict for verdict in verdicts if verdict.verdict == INVALID), None)


def verdict_evidence(node_id: str, verdict: Verdict) -> Evidence:
    detail = f"{verdict.verifier} invalid" + (f": {verdict.evidence}" if verdict.evidence else "")
    return Evidence(node_id, "verdict", 0.0, 0, 0, 0, detail)


@dataclass
class AdaptiveTrace(SolutionTrace):
    """A solution's search, bounded by its first invalid step and by its rollout budget."""

    bound: int | None = None  # the first step a verifier calls invalid
    spent: int = 0  # rollouts of the probes this solution paid for
    out_of_budget: bool = False

    @property
    def done(self) -> bool:
        return self.lo >= self.hi or self.out_of_budget

    @property
    def first_error(self) -> int:
        """The first step with q = 0; out of budget, the nearest step known to be wrong (or -1)."""
        if not self.done:
            raise RuntimeError(f"the search of {self.solution_id} has not finished")
        at = self.hi if self.out_of_budget else self.lo
        return at if at < len(self.path) else -1


def start_trace(path: list[Node], verdicts: Mapping[str, Sequence[Verdict]]) -> AdaptiveTrace:
    """The search range of one solution: [0, first invalid step), or [0, len) with none."""
    trace = AdaptiveTrace(path[-1].node_id, path, 0, len(path))
    for index, node in enumerate(path):
        verdict = deciding_verdict(verdicts.get(node.node_id, ()))
        if verdict is not None:
            trace.bound = trace.hi = index
            trace.applied[index] = verdict_evidence(node.node_id, verdict)
            break
    return trace


@dataclass
class AdaptiveOutcome:
    result: LabelResult
    traces: list[AdaptiveTrace]
    verdicts_used: int = 0  # solutions whose search a verifier bounded
    out_of_budget: int = 0  # solutions whose search stopped on the budget
    disagreements: int = 0  # nodes another solution would have labelled differently


def label_adaptive(
    policy: Policy,
    request: LabelRequest,
    verdicts: Mapping[str, Sequence[Verdict]],
    budget: int = DEFAULT_BUDGET,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> AdaptiveOutcome:
    """Adaptive labels for `request.to_label`, given every node's verdicts (node id -> verdicts)."""
    if budget < 0:
        raise ValueError(f"the budget is a number of rollouts per solution, >= 0; got {budget}")
    k = request.rollouts_per_step
    wanted = {node.node_id for node in request.to_label}
    paths = solution_paths(request.nodes, wanted)
    cache = free_evidence(request.nodes)
    spent_by: dict[str, str] = {}
    result = LabelResult()
    traces = [start_trace(path, verdicts) for path in paths]
    reported: set[str] = set()

    def report(finished: Sequence[AdaptiveTrace]) -> None:
        settled = {node.node_id for trace in finished for node in trace.path if node.node_id in wanted}
        if progress and settled - reported:
            progress(len(settled - reported))
        reported.update(settled)

    active = traces
    while active:
        requests: dict[str, Node] = {}
        for trace in active:
            apply_known(trace, cache, spent_by)
            if trace.done:
                continue
            node = trace.path[middle(trace.lo, trace.hi)]
            if node.node_id in requests:
                continue  # another solution pays for it this round; this one applies it next round
            if trace.spent + k > budget:
                trace.out_of_budget = True
                continue
            requests[node.node_id] = node
            spent_by[node.node_id] = trace.solution_id
            trace.spent += k
        report([trace for trace in active if trace.done])
        if requests:
            probe(policy, request, list(requests.values()), cache, result, batch_size, LABELER)
        active = [trace for trace in active if not trace.done]

    on_paths = {node.node_id for path in paths for node in path}
    loose = [node for node in request.to_label if node.node_id not in on_paths]  # tasks.tree makes none
    unprobed = [node for node in loose if node.node_id not in cache]
    if unprobed:
        probe(policy, request, unprobed, cache, result, batch_size, LABELER)
    decided = {
        node_id: verdict_evidence(node_id, verdict)
        for node_id, row in verdicts.items()
        if node_id in wanted and (verdict := deciding_verdict(row)) is not None
    }
    result.labels, disagreements = _resolve_labels(traces, cache, decided, wanted, loose)
    if progress and len(wanted) > len(reported):
        progress(len(wanted) - len(reported))
    return AdaptiveOutcome(
        result, traces, sum(trace.bound is not None for trace in traces),
        sum(trace.out_of_budget for trace in traces), disagreements,
    )


def _resolve_labels(
    traces: list[AdaptiveTrace], cache: dict[str, Evidence], decided: dict[str, Evidence], wanted: set[str],
    loose: list[Node],
) -> tuple[list[StepLabel], int]:
    chosen: dict[str, StepLabel] = {}
    disagreements: set[str] = set()
    for trace in traces:
        for index, node in enumerate(trace.path):
            if node.node_id not in wanted:
                continue
            own = decided.get(node.node_id) or cache.get(node.node_id)
            if own is not None:
                chosen.setdefault(node.node_id, direct_label(node, own))
                continue
            label = inferred_label(node, index, trace)
            if chosen.setdefault(node.node_id, label).hard != label.hard:
                disagreements.add(node.node_id)
    for node in loose:
        chosen.setdefault(node.node_id, direct_label(node, cache[node.node_id]))
    return sorted(chosen.values(), key=lambda label: label.node_id), len(disagreements)


def direct_label(node: Node, evidence: Evidence) -> StepLabel:
    """The label of a node from evidence about the node itself."""
    if evidence.kind == "answer":
        return outcome_label(node, LABELER)
    source = {"probe": "probe", "verdict": "verifier"}.get(evidence.kind, "no rollouts")
    return _label(node, evidence.q, evidence.reaches, evidence, f"adaptive: {source}: {evidence.describe()}")


def inferred_label(node: Node, index: int, trace: AdaptiveTrace) -> StepLabel:
    """The label of a step with no evidence of its own, from its solution's first error."""
    first_error = trace.first_error
    positive = first_error == -1 or index < first_error
    if positive:
        after = [j for j, evidence in trace.applied.items() if j >= index and evidence.reaches]
        if not after:  # the budget ran out before any evidence reached this step
            reason = f"adaptive: out of budget ({trace.spent} rollouts) with steps {trace.lo + 1}-{trace.hi} open: assumed positive"
            return _label(node, 1.0, True, None, reason)
        bound = min(after)
    else:
        bound = max(j for j, evidence in trace.applied.items() if first_error <= j <= index and not evidence.reaches)
    evidence = trace.applied[bound]
    return _label(node, evidence.q, positive, None, f"adaptive: inferred from step {bound + 1} ({evidence.describe()})")


def _label(node: Node, q: float, hard: bool, own: Evidence | None, reason: str) -> StepLabel:
    return StepLabel(
        label_id=content_id("label", node.node_id, LABELER),
        node_id=node.node_id,
        labeler=LABELER,
        q=q,
        hard=hard,
        n=own.n if own else 0,
        n_correct=own.n_correct if own else 0,
        generated_tokens=own.generated_tokens if own else 0,
        reason=reason,
    )


@dataclass
class AdaptiveLabeler:
    """Verifiers first; rollouts only where they leave the first error open, within a budget."""

    budget: int = DEFAULT_BUDGET  # rollouts per solution
    verifiers: tuple[str, ...] = DEFAULT_VERIFIERS  # for nodes the request has no verdicts for
    batch_size: int | None = None  # prefixes per policy call; None: as many as the policy asks for
    name: str = field(default=LABELER, init=False)

    def label(self, policy: Policy, request: LabelRequest, progress: Progress | None = None) -> LabelResult:
        verdicts = dict(request.verdicts)
        if any(node_id not in verdicts for node_id in request.nodes):
            from tasks.verification import load_verifiers, verify_tree

            questions = {problem_id: problem.question for problem_id, problem in request.problems.items()}
            for node_id, row in verify_tree(request.nodes, questions, load_verifiers(self.verifiers)).items():
                verdicts.setdefault(node_id, row)
        return label_adaptive(policy, request, verdicts, self.budget, self.batch_size, progress).result
