"""Consensus filtering: keep a solution only when its label sources agree on the first wrong step.

("The Lessons of Developing PRMs": keeping the samples on which MC estimation and an LLM judge
agree gives better PRMs from less data.) Every source gives a `SourceView` of a solution, its
first wrong step (0-based), -1 for "none", or None when it has no view (unavailable, no vote):
- a labeller (mc, search, judge, ...): the first step with hard=False; -1 if every step is
  positive; unavailable if some step has no label from it.
- a verifier (arith, z3, code, lean): the first step it judges invalid; -1 if none is invalid;
  unavailable if every step is unknown. So a verifier agrees with "first wrong step t" exactly
  when it is invalid at t and valid or unknown before t, and with "none" when it finds nothing
  invalid; being unknown at t is not agreeing with t.

Sources: every labeller with labels for the solution's steps, this run's and those stored by
earlier runs (mc earlier and the judge now is the Lessons setup; `labeler_sources`, configurable
as GenerateConfig.consensus_sources), then the configured verifiers. Consensus labels are never
sources. Each decision keeps every source's view (`source_views`), so the warehouse's
`consensus_retention` view gives retention per rule and per source pair.

Rules (`RULES`), recorded per solution in a `ConsensusDecision`:
- default: kept when every available source gives the same view (at least one is available).
  One available source is trivially unanimous; its reason says "1 available source".
- majority: kept when one view is held by more than half of the available sources, and by at
  least two of them.
- mc_and_verifiers: the anchor labeller (mc) must be available; every other available labeller
  must equal its view; verifiers only veto: one vetoes when it finds an invalid step before the
  anchor's first wrong step (or any invalid step when the anchor says none). A verifier that is
  invalid at the anchor's step confirms it; one that is silent there neither helps nor hurts.
  This is the lenient rule: it catches errors mc missed, not false alarms mc raised.
A dropped solution lists the sources that disagreed (for default and majority: those whose view
differs from the most common one, ties broken by source order) and the reason gives every view;
one dropped for lack of votes (no source, a lone source under majority, no anchor) lists none
and says so in its reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import polars as pl

from schemas.records import Node, StepLabel, Verdict
from schemas.tables import CONSENSUS
from tasks.ids import content_id

LABELER, VERIFIER = "labeler", "verifier"
INVALID, UNKNOWN = "invalid", "unknown"
DEFAULT_ANCHOR = "mc"


@dataclass(frozen=True)
class SourceView:
    """One source's view of one solution's first wrong step."""

    source: str
    kind: str  # LABELER or VERIFIER
    first_error: int | None  # 0-based; -1 = no wrong step; None = unavailable (does not vote)
    reason: str = ""  # why it is unavailable

    @property
    def available(self) -> bool:
        return self.first_error is not None


@dataclass(frozen=True)
class ConsensusDecision:
    solution_id: str
    rule: str
    kept: bool
    first_error: int | None  # the agreed first wrong step (-1: none) of a kept solution; None if dropped
    sources_agreeing: tuple[str, ...]
    sources_disagreeing: tuple[str, ...]
    reason: str
    sources_unavailable: tuple[str, ...] = ()
    # Every source's view, as decided on (kept for the per-pair retention of consensus_retention).
    views: tuple[SourceView, ...] = field(default=(), compare=False)

    @property
    def source_views(self) -> list[str]:
        """The views as stored: 'source=index' (0-based first wrong step, -1 none) or 'source=unavailable'.

        >>> ConsensusDecision("s", "default", False, None, (), (), "", (),
        ...                   (SourceView("mc", LABELER, 2), SourceView("code", VERIFIER, None))).source_views
        ['mc=2', 'code=unavailable']
        """
        return [f"{view.source}={'unavailable' if view.first_error is None else view.first_error}" for view in self.views]

    @property
    def decision_id(self) -> str:
        considered = sorted(self.sources_agreeing + self.sources_disagreeing + self.sources_unavailable)
        return content_id("consensus", self.solution_id, self.rule, *considered)


def describe(first_error: int | None) -> str:
    """A view in words, counting steps from 1 as people do.

    >>> [describe(2), describe(-1), describe(None)]
    ['step 3', 'none', 'unavailable']
    """
    if first_error is None:
        return "unavailable"
    return "none" if first_error == -1 else f"step {first_error + 1}"


def labeler_view(source: str, labels: Sequence[StepLabel | None]) -> SourceView:
    """A labeller's view from its labels along the path (None where a step has no label)."""
    missing = [index for index, label in enumerate(labels) if label is None]
    if missing or not labels:
        return SourceView(source, LABELER, None, f"no {source} label for step {missing[0] + 1}" if missing else "no steps")
    first = next((index for index, label in enumerate(labels) if not label.hard), -1)
    return SourceView(source, LABELER, first)


def verifier_view(source: str, verdicts: Sequence[Verdict | None]) -> SourceView:
    """A verifier's view from its verdicts along the path (None counts as unknown)."""
    values = [UNKNOWN if verdict is None else verdict.verdict for verdict in verdicts]
    if all(value == UNKNOWN for value in values):
        return SourceView(source, VERIFIER, None, "every step unknown")
    return SourceView(source, VERIFIER, values.index(INVALID) if INVALID in values else -1)


def _views_text(views: Sequence[SourceView]) -> str:
    return ", ".join(f"{view.source}={describe(view.first_error)}" for view in views)


def _reference(available: Sequence[SourceView]) -> tuple[int, int]:
    """The most common view and how many hold it; a tie goes to the view of the earliest source."""
    counts = Counter(view.first_error for view in available)
    best = max(counts.values())
    first = next(view.first_error for view in available if counts[view.first_error] == best)
    return first, best


def _split(views: Sequence[SourceView], value: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    agreeing = tuple(view.source for view in views if view.available and view.first_error == value)
    disagreeing = tuple(view.source for view in views if view.available and view.first_error != value)
    return agreeing, disagreeing


def _default(solution_id: str, views: Sequence[SourceView], anchor: str) -> ConsensusDecision:
    available = [view for view in views if view.available]
    value, _ = _reference(available)
    agreeing, disagreeing = _split(views, value)
    if disagreeing:
        return _decision(solution_id, "default", views, None, agreeing, disagreeing, f"sources disagree: {_views_text(available)}")
    plural = "source agrees" if len(available) == 1 else "sources agree"
    reason = f"{len(available)} available {plural} on {describe(value)}: {_views_text(available)}"
    return _decision(solution_id, "default", views, value, agreeing, (), reason)


def _majority(solution_id: str, views: Sequence[SourceView], anchor: str) -> ConsensusDecision:
    available = [view for view in views if view.available]
    value, count = _reference(available)
    agreeing, disagreeing = _split(views, value)
    if count * 2 > len(available) and count >= 2:
        reason = f"{count} of {len(available)} available sources say {describe(value)}: {_views_text(available)}"
        return _decision(solution_id, "majority", views, value, agreeing, disagreeing, reason)
    reason = f"no view held by more than half and at least two of {len(available)}: {_views_text(available)}"
    return _decision(solution_id, "majority", views, None, agreeing, disagreeing, reason)


def _mc_and_verifiers(solution_id: str, views: Sequence[SourceView], anchor: str) -> ConsensusDecision:
    anchored = next((view for view in views if view.source == anchor and view.available), None)
    available = [view for view in views if view.available]
    if anchored is None:
        reason = f"anchor {anchor} has no view of this solution: {_views_text(available)}"
        return _decision(solution_id, "mc_and_verifiers", views, None, (), (), reason)
    target = anchored.first_error
    agreeing, disagreeing, confirmed = [], [], []
    for view in available:
        if view.kind == LABELER:
            (agreeing if view.first_error == target else disagreeing).append(view.source)
            continue
        vetoes = view.first_error != -1 and (target == -1 or view.first_error < target)
        (disagreeing if vetoes else agreeing).append(view.source)
        if view.first_error == target and target != -1:
            confirmed.append(view.source)
    if disagreeing:
        reason = f"{', '.join(disagreeing)} contradict {anchor}: {_views_text(available)}"
        return _decision(solution_id, "mc_and_verifiers", views, None, tuple(agreeing), tuple(disagreeing), reason)
    confirmation = f"confirmed by {', '.join(confirmed)}" if confirmed else "no verifier confirms it, none contradicts"
    reason = f"{anchor} says {describe(target)}, {confirmation}: {_views_text(available)}"
    return _decision(solution_id, "mc_and_verifiers", views, target, tuple(agreeing), (), reason)


def _decision(
    solution_id: str, rule: str, views: Sequence[SourceView], first_error: int | None,
    agreeing: tuple[str, ...], disagreeing: tuple[str, ...], reason: str,
) -> ConsensusDecision:
    unavailable = tuple(view.source for view in views if not view.available)
    if unavailable:
        reason += "; unavailable: " + ", ".join(f"{view.source} ({view.reason})" for view in views if not view.available)
    return ConsensusDecision(
        solution_id, rule, first_error is not None, first_error, agreeing, disagreeing, reason, unavailable, tuple(views)
    )


Rule = Callable[[str, Sequence[SourceView], str], ConsensusDecision]
RULES: dict[str, Rule] = {"default": _default, "majority": _majority, "mc_and_verifiers": _mc_and_verifiers}


def decide(
    solution_id: str, views: Sequence[SourceView], rule: str = "default", anchor: str = DEFAULT_ANCHOR
) -> ConsensusDecision:
    """Keep or drop one solution under `rule`, with the sources on each side and the reason."""
    if rule not in RULES:
        raise ValueError(f"unknown consensus rule {rule!r}; choose from: {', '.join(RULES)}")
    if not any(view.available for view in views):
        return _decision(solution_id, rule, views, None, (), (), "no source has a view of this solution")
    return RULES[rule](solution_id, views, anchor)


# --- From a labelled, verified tree ------------------------------------------------------------


def solution_views(
    path: Sequence[Node],
    labels_by_source: Mapping[str, Mapping[str, StepLabel]],
    verdicts_by_node: Mapping[str, Sequence[Verdict]],
    verifiers: Sequence[str],
) -> list[SourceView]:
    """Every source's view of one path: labellers in the given order, then verifiers."""
    views = [
        labeler_view(source, [labels.get(node.node_id) for node in path])
        for source, labels in labels_by_source.items()
    ]
    for name in verifiers:
        per_step = [
            next((verdict for verdict in verdicts_by_node.get(node.node_id, ()) if verdict.verifier == name), None)
            for node in path
        ]
        views.append(verifier_view(name, per_step))
    return views


def labeler_sources(
    run_labeler: str,
    run_labels: Mapping[str, StepLabel],
    stored: Mapping[str, Mapping[str, StepLabel]],
    configured: Sequence[str] = (),
) -> dict[str, dict[str, StepLabel]]:
    """The labellers that vote, each with its labels by node id.

    `stored` holds labels earlier runs kept for the same nodes, by labeller: mc from an earlier run
    and the judge now is the Lessons setup. This run's labels win over its own stored ones. With
    `configured` empty every labeller that has labels votes; otherwise exactly the named ones (a
    named labeller without labels is unavailable on every solution, and says so). Consensus labels
    (`consensus:<rule>`) are conclusions, never sources. This run's labeller comes first, then
    the rest by name, so ties and reasons read the same way on every run.

    >>> sorted(labeler_sources("judge", {}, {"mc": {}, "consensus:default": {}}))
    ['judge', 'mc']
    >>> list(labeler_sources("judge", {}, {"mc": {}, "search": {}}, configured=("search", "judge")))
    ['judge', 'search']
    """
    by_source: dict[str, dict[str, StepLabel]] = {
        name: dict(labels) for name, labels in stored.items() if not name.startswith("consensus:")
    }
    by_source[run_labeler] = {**by_source.get(run_labeler, {}), **run_labels}
    names = list(configured) if configured else list(by_source)
    ordered = sorted(dict.fromkeys(names), key=lambda name: (name != run_labeler, name))
    return {name: by_source.get(name, {}) for name in ordered}


def consensus_labeler(rule: str) -> str:
    """The labeller name consensus labels are stored under, one per rule."""
    return f"consensus:{rule}"


def consensus_labels(
    decision: ConsensusDecision,
    path: Sequence[Node],
    labels_by_source: Mapping[str, Mapping[str, StepLabel]],
) -> list[StepLabel]:
    """Labels of a kept solution, through the agreed first wrong step and no further.

    Before that step the labels are positive and the step itself is negative: that is what the
    sources agreed on. The steps after it get no consensus label, because no source vouches for
    them (a later step can recover); the dataset truncates such a solution after its first error.
    Soft labels are the mean q of the labellers that label the node (hard as 0/1 when none does).
    A dropped solution gets none."""
    if not decision.kept or decision.first_error is None:
        return []
    name = consensus_labeler(decision.rule)
    labels = []
    for index, node in enumerate(path):
        hard = decision.first_error == -1 or index < decision.first_error
        soft = [by_node[node.node_id].q for by_node in labels_by_source.values() if node.node_id in by_node]
        labels.append(
            StepLabel(
                label_id=content_id("label", node.node_id, name),
                node_id=node.node_id,
                labeler=name,
                q=sum(soft) / len(soft) if soft else float(hard),
                hard=hard,
                n=0,
                n_correct=0,
                generated_tokens=0,
                reason=f"{name}: {describe(decision.first_error)} by {', '.join(decision.sources_agreeing)}",
            )
        )
        if not hard:
            break
    return labels


@dataclass
class ConsensusOutcome:
    decisions: list[ConsensusDecision] = field(default_factory=list)
    labels: list[StepLabel] = field(default_factory=list)  # one per node of the kept solutions
    views: dict[str, list[SourceView]] = field(default_factory=dict)  # solution id -> views


def run_consensus(
    paths: Mapping[str, Sequence[Node]],
    labels_by_source: Mapping[str, Mapping[str, StepLabel]],
    verdicts_by_node: Mapping[str, Sequence[Verdict]],
    verifiers: Sequence[str],
    rule: str = "default",
    anchor: str = DEFAULT_ANCHOR,
) -> ConsensusOutcome:
    """Decide every solution (terminal node id -> path) and label the kept ones' nodes once each."""
    outcome = ConsensusOutcome()
    labelled: set[str] = set()
    for solution_id, path in paths.items():
        views = solution_views(path, labels_by_source, verdicts_by_node, verifiers)
        decision = decide(solution_id, views, rule, anchor)
        outcome.views[solution_id] = views
        outcome.decisions.append(decision)
        for label in consensus_labels(decision, path, labels_by_source):
            if label.node_id not in labelled:
                labelled.add(label.node_id)
                outcome.labels.append(label)
    return outcome


def decisions_frame(
    decisions: Sequence[ConsensusDecision], problem_of: Mapping[str, str], run_id: str
) -> pl.DataFrame:
    """Rows of the CONSENSUS table; `problem_of` maps solution id to problem id."""
    rows = [
        {
            "decision_id": decision.decision_id,
            "solution_id": decision.solution_id,
            "problem_id": problem_of.get(decision.solution_id),
            "rule": decision.rule,
            "kept": decision.kept,
            "first_error": decision.first_error,
            "agreeing": list(decision.sources_agreeing),
            "disagreeing": list(decision.sources_disagreeing),
            "unavailable": list(decision.sources_unavailable),
            "reason": decision.reason,
            "run_id": run_id,
            "source_views": decision.source_views,
        }
        for decision in decisions
    ]
    return CONSENSUS.frame(rows)


# --- Reporting ---------------------------------------------------------------------------------


def retention_by_rule(decisions: Sequence[ConsensusDecision]) -> dict[str, float]:
    """The share of solutions each rule keeps."""
    totals: Counter[str] = Counter(decision.rule for decision in decisions)
    kept: Counter[str] = Counter(decision.rule for decision in decisions if decision.kept)
    return {rule: kept[rule] / totals[rule] for rule in totals}


@dataclass(frozen=True)
class PairAgreement:
    """How two sources relate over a set of solutions."""

    first: str
    second: str
    solutions: int
    both_available: int
    agreeing: int  # both available and the same view
    agreement_rate: float | None  # agreeing / both_available; None when never both available
    retention: float  # share the default rule keeps if these two were the only sources


def pairwise_agreement(views_by_solution: Mapping[str, Sequence[SourceView]]) -> list[PairAgreement]:
    """Every pair of sources (in first-seen order), over the same solutions."""
    sources: list[str] = []
    for views in views_by_solution.values():
        sources += [view.source for view in views if view.source not in sources]
    pairs = []
    for first, second in combinations(sources, 2):
        both = agreeing = kept = 0
        for solution_id, views in views_by_solution.items():
            pair = [view for view in views if view.source in (first, second)]
            if len(pair) == 2 and all(view.available for view in pair):
                both += 1
                agreeing += pair[0].first_error == pair[1].first_error
            kept += decide(solution_id, pair, "default").kept
        total = len(views_by_solution)
        pairs.append(
            PairAgreement(first, second, total, both, agreeing, agreeing / both if both else None, kept / total if total else 0.0)
        )
    return pairs
