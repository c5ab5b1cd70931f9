import polars as pl
import pytest

from schemas.records import Node, StepLabel, Verdict
from schemas.tables import CONSENSUS
from tasks.consensus import (
    ConsensusDecision,
    PairAgreement,
    SourceView,
    consensus_labels,
    decide,
    decisions_frame,
    labeler_sources,
    labeler_view,
    pairwise_agreement,
    retention_by_rule,
    run_consensus,
    verifier_view,
)
from tasks.ids import content_id


def label(node_id: str, hard: bool, q: float | None = None, labeler: str = "mc") -> StepLabel:
    q = (1.0 if hard else 0.0) if q is None else q
    return StepLabel(f"{labeler}-{node_id}", node_id, labeler, q, hard, 4, 0, 0, "")


def verdicts(name: str, values: str) -> list[Verdict]:
    """'vui' -> valid, unknown, invalid."""
    words = {"v": "valid", "u": "unknown", "i": "invalid"}
    return [Verdict(name, words[letter]) for letter in values]


def mc(first_error):
    return SourceView("mc", "labeler", first_error)


def verifier(name, first_error, reason=""):
    return SourceView(name, "verifier", first_error, reason)


# --- Views --------------------------------------------------------------------------------------


def test_labeler_view_is_the_first_negative_step():
    assert labeler_view("mc", [label("a", True), label("b", False), label("c", True)]).first_error == 1
    assert labeler_view("mc", [label("a", True), label("b", True)]).first_error == -1
    missing = labeler_view("judge", [label("a", True), None])
    assert (missing.first_error, missing.reason) == (None, "no judge label for step 2")


@pytest.mark.parametrize(
    ("values", "expected"),
    [("vvi", 2), ("uui", 2), ("viv", 1), ("vvv", -1), ("vuu", -1), ("uuu", None), ("", None)],
)
def test_verifier_view_is_the_first_invalid_step_and_all_unknown_is_unavailable(values, expected):
    assert verifier_view("arith", verdicts("arith", values)).first_error == expected


def test_a_missing_verdict_counts_as_unknown():
    view = verifier_view("z3", [None, Verdict("z3", "invalid")])
    assert view.first_error == 1
    assert verifier_view("z3", [None, None]).reason == "every step unknown"


# --- Rules --------------------------------------------------------------------------------------


def test_default_keeps_when_all_available_sources_agree():
    decision = decide("s", [mc(2), SourceView("judge", "labeler", 2), verifier("arith", 2)])
    assert decision == ConsensusDecision(
        "s", "default", True, 2, ("mc", "judge", "arith"), (),
        "3 available sources agree on step 3: mc=step 3, judge=step 3, arith=step 3",
    )


def test_default_drops_on_disagreement_and_names_the_minority():
    decision = decide("s", [mc(1), SourceView("judge", "labeler", 2), verifier("arith", 2)])
    assert (decision.kept, decision.first_error) == (False, None)
    assert (decision.sources_agreeing, decision.sources_disagreeing) == (("judge", "arith"), ("mc",))
    assert decision.reason == "sources disagree: mc=step 2, judge=step 3, arith=step 3"


def test_default_tie_names_the_sources_against_the_first_source():
    decision = decide("s", [mc(1), verifier("arith", -1)])
    assert (decision.sources_agreeing, decision.sources_disagreeing) == (("mc",), ("arith",))


def test_a_verifier_unknown_before_the_error_and_invalid_at_it_agrees():
    views = [mc(2), verifier_view("arith", verdicts("arith", "uuiv"))]
    assert decide("s", views).kept
    assert decide("s", views).first_error == 2


def test_a_verifier_unknown_at_the_error_does_not_agree_with_it():
    decision = decide("s", [mc(2), verifier_view("arith", verdicts("arith", "vvuv"))])
    assert not decision.kept
    assert decision.reason == "sources disagree: mc=step 3, arith=none"


def test_an_unavailable_verifier_does_not_vote_and_is_recorded():
    decision = decide("s", [mc(1), verifier_view("code", verdicts("code", "uuu")), verifier("arith", 1)])
    assert decision.kept
    assert decision.sources_unavailable == ("code",)
    assert decision.reason == (
        "2 available sources agree on step 2: mc=step 2, arith=step 2; unavailable: code (every step unknown)"
    )


def test_all_sources_agreeing_that_nothing_is_wrong_keeps_the_solution():
    decision = decide("s", [mc(-1), verifier("arith", -1), verifier("z3", -1)])
    assert (decision.kept, decision.first_error) == (True, -1)
    assert decision.reason == "3 available sources agree on none: mc=none, arith=none, z3=none"


def test_a_single_available_source_is_kept_by_default_and_says_so():
    decision = decide("s", [mc(0), verifier("code", None, "every step unknown")])
    assert decision.kept
    assert decision.reason.startswith("1 available source agrees on step 1: mc=step 1")


def test_no_available_source_drops_with_a_reason():
    decision = decide("s", [verifier("code", None, "every step unknown")], "majority")
    assert (decision.kept, decision.sources_disagreeing) == (False, ())
    assert decision.reason == "no source has a view of this solution; unavailable: code (every step unknown)"


def test_majority_keeps_more_than_half_and_records_the_minority():
    decision = decide("s", [mc(1), verifier("arith", 1), verifier("z3", 3)], "majority")
    assert (decision.kept, decision.first_error) == (True, 1)
    assert decision.sources_disagreeing == ("z3",)
    assert decision.reason == "2 of 3 available sources say step 2: mc=step 2, arith=step 2, z3=step 4"


@pytest.mark.parametrize("views", [[mc(1), verifier("arith", 2)], [mc(1)]])
def test_majority_needs_more_than_half_and_two_votes(views):
    assert not decide("s", views, "majority").kept


def test_mc_and_verifiers_lets_verifiers_veto_an_earlier_error():
    decision = decide("s", [mc(2), verifier("arith", 1), verifier("z3", -1)], "mc_and_verifiers")
    assert (decision.kept, decision.sources_disagreeing, decision.sources_agreeing) == (False, ("arith",), ("mc", "z3"))
    assert decision.reason == "arith contradict mc: mc=step 3, arith=step 2, z3=none"


@pytest.mark.parametrize(
    ("mc_view", "arith_view", "kept", "reason_start"),
    [
        (2, 2, True, "mc says step 3, confirmed by arith"),
        (2, -1, True, "mc says step 3, no verifier confirms it, none contradicts"),
        (2, 3, True, "mc says step 3, no verifier confirms it, none contradicts"),
        (-1, -1, True, "mc says none, no verifier confirms it, none contradicts"),
        (-1, 0, False, "arith contradict mc"),
    ],
)
def test_mc_and_verifiers(mc_view, arith_view, kept, reason_start):
    decision = decide("s", [mc(mc_view), verifier("arith", arith_view)], "mc_and_verifiers")
    assert decision.kept is kept
    assert decision.reason.startswith(reason_start)


def test_mc_and_verifiers_needs_the_anchor_and_agreeing_labellers():
    assert decide("s", [verifier("arith", 1)], "mc_and_verifiers").reason == (
        "anchor mc has no view of this solution: arith=step 2"
    )
    judged = decide("s", [mc(1), SourceView("judge", "labeler", 0)], "mc_and_verifiers")
    assert (judged.kept, judged.sources_disagreeing) == (False, ("judge",))


def test_unknown_rule_lists_the_rules():
    with pytest.raises(ValueError, match="unknown consensus rule 'any'; choose from: default, majority, mc_and_verifiers"):
        decide("s", [mc(1)], "any")


def test_decision_ids_depend_on_solution_rule_and_sources():
    views = [mc(1), verifier("arith", 1)]
    one = decide("s", views).decision_id
    assert one == content_id("consensus", "s", "default", "arith", "mc")
    assert one != decide("s", views, "majority").decision_id
    assert one != decide("s", [*views, verifier("z3", None)]).decision_id


# --- Labels, a whole tree, the table, reporting -----------------------------------------------


def _path() -> list[Node]:
    return [Node("a", "p", None, 1, "A", False), Node("b", "p", "a", 2, "B", False), Node("c", "p", "b", 3, "C", True)]


def test_consensus_labels_take_hard_from_the_agreed_error_and_soft_from_the_labellers():
    labels = {
        "mc": {"a": label("a", True, 0.75), "b": label("b", False), "c": label("c", True, 0.25)},
        "judge": {"a": label("a", True, 1.0, "judge"), "b": label("b", False, 0.0, "judge")},
    }
    decision = decide("c", [mc(1), verifier("arith", 1)])
    result = consensus_labels(decision, _path(), labels)
    # Labels stop at the agreed first wrong step: no source vouches for the step after it.
    assert [(l.node_id, l.hard, l.q) for l in result] == [("a", True, 0.875), ("b", False, 0.0)]
    assert {l.labeler for l in result} == {"consensus:default"}
    assert result[0].label_id == content_id("label", "a", "consensus:default")
    assert result[0].reason == "consensus:default: step 2 by mc, arith"
    assert consensus_labels(decide("c", [mc(1), verifier("arith", 2)]), _path(), labels) == []


def test_consensus_labels_without_labellers_use_the_hard_label_as_soft():
    decision = decide("c", [verifier("arith", -1)])
    assert [(l.hard, l.q) for l in consensus_labels(decision, _path(), {})] == [(True, 1.0)] * 3


def test_run_consensus_over_a_tree_labels_each_kept_node_once():
    a, b, c = _path()
    d = Node("d", "p", "a", 2, "D", True)
    paths = {"c": [a, b, c], "d": [a, d]}
    labels = {"mc": {"a": label("a", True), "b": label("b", False), "c": label("c", False), "d": label("d", True)}}
    verdicts_by_node = {
        "a": verdicts("arith", "v"), "b": verdicts("arith", "i"), "c": verdicts("arith", "v"), "d": verdicts("arith", "u"),
    }
    outcome = run_consensus(paths, labels, verdicts_by_node, ["arith"])
    assert [(d.solution_id, d.kept, d.first_error) for d in outcome.decisions] == [("c", True, 1), ("d", True, -1)]
    assert [(l.node_id, l.hard) for l in outcome.labels] == [("a", True), ("b", False), ("d", True)]
    assert [v.first_error for v in outcome.views["d"]] == [-1, -1]

    frame = decisions_frame(outcome.decisions, {"c": "p", "d": "p"}, "run")
    assert frame.schema == CONSENSUS.polars_schema()
    assert frame.select("solution_id", "problem_id", "kept", "first_error", "agreeing", "disagreeing", "run_id").rows() == [
        ("c", "p", True, 1, ["mc", "arith"], [], "run"),
        ("d", "p", True, -1, ["mc", "arith"], [], "run"),
    ]


def test_retention_by_rule_and_pairwise_agreement():
    views = {
        "s1": [mc(1), verifier("arith", 1), verifier("code", None)],
        "s2": [mc(2), verifier("arith", -1), verifier("code", None)],
        "s3": [mc(-1), verifier("arith", -1), verifier("code", -1)],
        "s4": [mc(0), verifier("arith", None), verifier("code", 1)],
    }
    decisions = [decide(s, v, rule) for s, v in views.items() for rule in ("default", "majority")]
    assert retention_by_rule(decisions) == {"default": 0.5, "majority": 0.5}
    assert pairwise_agreement(views) == [
        PairAgreement("mc", "arith", 4, 3, 2, 2 / 3, 0.75),
        PairAgreement("mc", "code", 4, 2, 1, 0.5, 0.75),
        PairAgreement("arith", "code", 4, 1, 1, 1.0, 1.0),
    ]


def test_docstring_examples():
    import doctest

    import tasks.consensus as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


# --- Sources ------------------------------------------------------------------------------------


def test_stored_labels_of_other_labellers_vote_beside_this_runs():
    stored = {
        "mc": {"a": label("a", True), "b": label("b", False)},
        "judge": {"a": label("a", False, labeler="judge")},  # an earlier judge run's label of a
        "consensus:default": {"a": label("a", True, labeler="consensus:default")},
    }
    now = {"a": label("a", True, labeler="judge"), "b": label("b", False, labeler="judge")}
    sources = labeler_sources("judge", now, stored)
    assert list(sources) == ["judge", "mc"]  # this run's first; consensus labels never vote
    assert sources["judge"] == now  # this run's labels win over its stored ones
    assert list(labeler_sources("judge", now, stored, configured=("mc",))) == ["mc"]
    named = labeler_sources("judge", now, stored, configured=("search", "judge"))
    assert (list(named), named["search"]) == (["judge", "search"], {})

    # The Lessons setup: mc stored by an earlier run, the judge now; they agree on step 2.
    a, b, _ = _path()
    outcome = run_consensus({"b": [a, b]}, sources, {}, [])
    decision, = outcome.decisions
    assert (decision.kept, decision.first_error, decision.sources_agreeing) == (True, 1, ("judge", "mc"))
    dropped = run_consensus({"b": [a, b]}, named, {}, []).decisions[0]
    assert dropped.sources_unavailable == ("search",)
    assert dropped.reason.endswith("unavailable: search (no search label for step 1)")


def test_decisions_store_every_sources_view():
    decision = decide("s", [mc(2), verifier("arith", -1), verifier("code", None, "every step unknown")])
    assert decision.source_views == ["mc=2", "arith=-1", "code=unavailable"]
    frame = decisions_frame([decision], {"s": "p"}, "run")
    assert frame["source_views"].to_list() == [["mc=2", "arith=-1", "code=unavailable"]]


def test_the_consensus_retention_view_matches_the_python_report():
    """warehouse/views.py's consensus_retention over stored decisions gives what retention_by_rule
    and pairwise_agreement compute from the views in memory."""
    import duckdb

    from warehouse.views import CONSENSUS_RETENTION

    views = {
        "s1": [mc(1), verifier("arith", 1), verifier("code", None)],
        "s2": [mc(2), verifier("arith", -1), verifier("code", None)],
        "s3": [mc(-1), verifier("arith", -1), verifier("code", -1)],
        "s4": [mc(0), verifier("arith", None), verifier("code", 1)],
        "s5": [mc(None), verifier("arith", None), verifier("code", None)],
    }
    decisions = [decide(s, v, rule) for s, v in views.items() for rule in ("default", "majority")]
    connection = duckdb.connect()
    connection.execute(CONSENSUS.ddl())
    stored = decisions_frame(decisions, {}, "run").to_arrow()
    connection.execute("INSERT INTO consensus SELECT * FROM stored")
    rows = connection.execute(f"SELECT * FROM ({CONSENSUS_RETENTION})").fetchall()
    by_key = {(rule, a, b): (n, kept, retention, both, agreeing, rate) for rule, a, b, n, kept, retention, both, agreeing, rate in rows}
    for rule, share in retention_by_rule(decisions).items():
        assert by_key[(rule, None, None)][2] == pytest.approx(share)
    assert by_key[("default", None, None)][:2] == (5, 2)
    for pair in pairwise_agreement(views):
        a, b = sorted((pair.first, pair.second))
        n, _, retention, both, agreeing, rate = by_key[("default", a, b)]
        assert (n, both, agreeing) == (pair.solutions, pair.both_available, pair.agreeing)
        assert retention == pytest.approx(pair.retention)
        assert rate == (None if pair.agreement_rate is None else pytest.approx(pair.agreement_rate))
    assert len(rows) == 2 * (1 + 3)  # per rule: its own row and one per pair of mc, arith, code


def test_real_verifiers_read_a_case_split_as_cases_so_consensus_keeps_the_right_solution():
    """The verdicts generate stores and consensus reads come from role-aware reading.

    Each case binds x anew; read as plain claims, `x = -13` contradicts `x = 5` of the case
    before and the verifiers veto a correct solution.
    """
    from tasks.verification import load_verifiers, solution_paths, verdicts_frame, verify_tree

    case_1 = Node("a", "p", None, 1, "Case 1: $x + 4 = 9$, so $x = 5$.", False)
    case_2 = Node("b", "p", "a", 2, "Case 2: $x + 4 = -9$, so $x = -13$.", False)
    both = Node("c", "p", "b", 3, "So $x = 5$ or $x = -13$.", True, "5, -13", True)
    slip = Node("d", "p", "a", 2, "Case 2: $x + 4 = -9$, so $x = -5$.", False)
    slip_end = Node("e", "p", "d", 3, "So $x = 5$ or $x = -5$.", True, "5, -5", False)
    nodes = {node.node_id: node for node in (case_1, case_2, both, slip, slip_end)}
    verdicts_by_node = verify_tree(nodes, {"p": "Solve $|x + 4| = 9$."}, load_verifiers(["arith", "z3"]))
    by_verifier = {n: {v.verifier: v.verdict for v in row} for n, row in verdicts_by_node.items()}
    assert by_verifier == {
        "a": {"arith": "unknown", "z3": "valid"},
        "b": {"arith": "unknown", "z3": "valid"},
        "c": {"arith": "unknown", "z3": "valid"},
        "d": {"arith": "unknown", "z3": "invalid"},
        "e": {"arith": "unknown", "z3": "unknown"},
    }
    mc_labels = {"mc": {n: label(n, n not in ("d", "e")) for n in nodes}}
    outcome = run_consensus(solution_paths(nodes), mc_labels, verdicts_by_node, ["arith", "z3"])
    assert [(d.solution_id, d.kept, d.first_error) for d in outcome.decisions] == [("c", True, -1), ("e", True, 1)]
    stored = verdicts_frame(verdicts_by_node, "run").filter(pl.col("node_id") == "b").sort("verifier")
    assert stored.select("verifier", "verdict").rows() == [("arith", "unknown"), ("z3", "valid")]
    assert stored["evidence"][1] == "x = -13 follows from the premises"
