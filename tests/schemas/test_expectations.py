"""The verdict, consensus and rollout suites fire: each bad frame fails the gate naming the expectation.

Real Great Expectations on tiny inline frames with the tables' exact schemas (the suites run end to
end on a real generate run in tests/flows/test_gate_coverage.py).
"""

from __future__ import annotations

import pytest

from schemas import expectations
from schemas.tables import CONSENSUS, ROLLOUTS, VERDICTS
from tasks.gates import GateFailed, enforce, run_suite

KNOWN_NODES = ("n1", "n2")


def verdict(**changes) -> dict:
    return {"verdict_id": "v1", "node_id": "n1", "verifier": "arith", "verdict": "valid", "evidence": "2 = 2",
            "reason": "", "ms": 1.0, "run_id": "r"} | changes


def rollout(**changes) -> dict:
    return {"rollout_id": "r1", "node_id": "n1", "labeler": "mc", "sample_index": 0, "completion": "The answer is 4.",
            "final_answer": "4", "is_correct": True, "generated_tokens": 5, "finish_reason": "stop",
            "policy": "simulated", "temperature": 0.7, "seed": 1, "run_id": "r", "prompt": None} | changes


def decision(**changes) -> dict:
    return {"decision_id": "d1", "solution_id": "n2", "problem_id": "p1", "rule": "default", "kept": True,
            "first_error": -1, "agreeing": ["mc", "arith"], "disagreeing": [], "unavailable": [],
            "reason": "all sources agree: no wrong step", "run_id": "r", "source_views": ["mc=-1", "arith=-1"]} | changes


SUITES = {  # suite -> (table, its expectations)
    "verdicts": (VERDICTS, lambda: expectations.verdicts_suite(KNOWN_NODES)),
    "rollouts": (ROLLOUTS, lambda: expectations.rollouts_suite(KNOWN_NODES)),
    "consensus": (CONSENSUS, expectations.consensus_suite),
}

# (suite, expectation, the frame's rows, how many rows the expectation flags)
BAD_FRAMES = [
    ("verdicts", "verdict_id_unique", [verdict(), verdict(node_id="n2")], 2),
    ("verdicts", "verdict_three_valued", [verdict(), verdict(verdict_id="v2", verdict="probably")], 1),
    ("verdicts", "verdict_node_known", [verdict(node_id="ghost"), verdict(verdict_id="v2")], 1),
    ("rollouts", "rollout_id_unique", [rollout(), rollout(sample_index=1)], 2),
    ("rollouts", "rollout_node_known", [rollout(), rollout(rollout_id="r2", node_id="ghost")], 1),
    ("consensus", "decision_id_unique", [decision(), decision(solution_id="n1")], 2),
    ("consensus", "dropped_sample_has_reason",
     [decision(), decision(decision_id="d2", solution_id="n1", kept=False, first_error=None, reason=None)], 1),
]


def results(suite: str, rows: list[dict]):
    table, suite_expectations = SUITES[suite]
    return run_suite(suite, table.frame(rows), suite_expectations())


GOOD_FRAMES = {
    "verdicts": [verdict(), verdict(verdict_id="v2", node_id="n2", verdict="unknown", reason="no claim")],
    "rollouts": [rollout(), rollout(rollout_id="r2", node_id="n2", is_correct=False)],
    "consensus": [decision(), decision(decision_id="d2", solution_id="n1", kept=False, first_error=None,
                                       reason="mc says step 2, arith says none")],
}


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_good_frame_passes_every_expectation_of_its_suite(suite):
    checked = results(suite, GOOD_FRAMES[suite])
    assert [(result.expectation, result.success, result.unexpected_count) for result in checked] == [
        (expectation.name, True, 0) for expectation in SUITES[suite][1]()
    ]
    enforce(checked)  # raises nothing


@pytest.mark.parametrize(("suite", "expectation", "rows", "flagged"), BAD_FRAMES,
                         ids=[case[1] for case in BAD_FRAMES])
def test_a_bad_frame_fails_the_gate_naming_the_expectation(suite, expectation, rows, flagged):
    checked = results(suite, rows)
    with pytest.raises(GateFailed) as failed:
        enforce(checked)
    assert [(f.suite, f.expectation, f.unexpected_count) for f in failed.value.failures] == [
        (suite, expectation, flagged)
    ]
    assert str(failed.value) == f"quality gate failed: {suite}.{expectation} ({flagged} rows)"


def test_every_expectation_of_the_three_suites_has_a_bad_frame():
    named = {(suite, expectation.name) for suite, (_, made) in SUITES.items() for expectation in made()}
    assert {(suite, expectation) for suite, expectation, _, _ in BAD_FRAMES} == named
