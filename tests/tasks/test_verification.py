import os
import threading
import time

import pytest

from schemas.records import Node, Verdict
from schemas.tables import VERDICTS
from tasks.ids import content_id
from tasks.verification import parse_verifier_names, solution_paths, verdicts_frame, verify_solution, verify_tree
from tasks.verifiers.arith import ArithVerifier
from tasks.verifiers.base import ABANDON_AFTER_MS, StepContext, run_guarded

QUESTION = "Mia has 14 apples. She gets 7 more. Then she has 3 times as many. How many apples does Mia have now?"


class RecordingVerifier:
    """Says invalid when a step contains 'bad', else valid; remembers every call."""

    def __init__(self, name: str, sleep_s: float = 0.0):
        self.name = name
        self.sleep_s = sleep_s
        self.calls: list[tuple[str, StepContext]] = []

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        self.calls.append((step_text, context))
        time.sleep(self.sleep_s)
        return Verdict(self.name, "invalid" if "bad" in step_text else "valid", ms=1.0)


def test_parse_verifier_names_keeps_order_and_rejects_unknown_names():
    assert parse_verifier_names("z3, arith,,z3") == ("z3", "arith")
    with pytest.raises(ValueError, match="unknown verifier 'sympy'; choose from: arith, z3, lean, code"):
        parse_verifier_names("sympy")


def test_each_step_is_judged_by_each_verifier_with_the_steps_before_it():
    first, second = RecordingVerifier("a"), RecordingVerifier("b")
    verdicts = verify_solution("Q?", ["one", "two bad", "three"], [first, second])
    assert [[v.verifier + ":" + v.verdict for v in step] for step in verdicts] == [
        ["a:valid", "b:valid"], ["a:invalid", "b:invalid"], ["a:valid", "b:valid"],
    ]
    assert [context.previous_steps for _, context in first.calls] == [(), ("one",), ("one", "two bad")]
    assert {context.problem for _, context in second.calls} == {"Q?"}


def test_a_spent_budget_makes_the_remaining_checks_unknown_with_the_reason():
    slow = RecordingVerifier("slow", sleep_s=0.03)
    verdicts = verify_solution("Q?", ["one", "two", "three"], [slow], budget_ms=10)
    assert [step[0].verdict for step in verdicts] == ["valid", "unknown", "unknown"]
    assert verdicts[1][0].reason == "not checked: the solution's budget of 10 ms was spent"
    assert len(slow.calls) == 1


def test_real_arith_verifier_finds_the_slip():
    verdicts = verify_solution(QUESTION, ["Step 1: 14 + 7 = 21", "Step 2: 21 * 3 = 62"], [ArithVerifier()])
    assert [step[0].verdict for step in verdicts] == ["valid", "invalid"]
    assert verdicts[1][0].evidence == "21 * 3 = 62 is false: left 63, right 62"


def _tree() -> dict[str, Node]:
    nodes = [
        Node("r", "p", None, 1, "root", False),
        Node("x", "p", "r", 2, "x bad", True, "1", False),
        Node("y", "p", "r", 2, "y", True, "2", True),
    ]
    return {node.node_id: node for node in nodes}


def test_solution_paths_are_root_first_in_terminal_id_order():
    assert {key: [n.node_id for n in path] for key, path in solution_paths(_tree()).items()} == {
        "x": ["r", "x"], "y": ["r", "y"],
    }


def test_verify_tree_verifies_a_shared_step_once():
    verifier = RecordingVerifier("a")
    verdicts = verify_tree(_tree(), {"p": "Q?"}, [verifier])
    assert {node: [v.verdict for v in row] for node, row in verdicts.items()} == {
        "r": ["valid"], "x": ["invalid"], "y": ["valid"],
    }
    assert [step for step, _ in verifier.calls] == ["root", "x bad", "y"]


def test_verdicts_frame_has_the_table_schema_and_content_ids():
    frame = verdicts_frame({"n1": [Verdict("arith", "invalid", "1 = 2 is false", "", 2.5)]}, "run")
    assert frame.schema == VERDICTS.polars_schema()
    assert frame.rows() == [(content_id("verdict", "n1", "arith"), "n1", "arith", "invalid", "1 = 2 is false", "", 2.5, "run")]


def test_docstring_examples():
    import doctest

    import tasks.verification as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


class BlockedVerifier:
    """Built on run_guarded like the real verifiers, but blocks in a C call (a read from a pipe that
    nobody writes) that never looks at its deadline."""

    def __init__(self, name: str, timeout_ms: float):
        self.name, self.timeout_ms = name, timeout_ms
        self.read_end, self.write_end = os.pipe()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        return run_guarded(self.name, self.timeout_ms, lambda deadline: Verdict(self.name, os.read(self.read_end, 1).decode()))


def test_a_hanging_verifier_is_cut_off_at_its_timeout_and_the_others_still_judge():
    blocked = BlockedVerifier("blocked-in-read", timeout_ms=200)
    unblock = threading.Timer(10, os.write, (blocked.write_end, b"x" * 8))  # so that a guard that waits fails, not hangs
    unblock.start()
    began = time.monotonic()
    verdicts = verify_solution(QUESTION, ["Step 1: 14 + 7 = 21", "Step 2: 21 * 3 = 62", "Step 3: 62 + 1 = 63"],
                               [blocked, ArithVerifier()], budget_ms=60_000)
    took = time.monotonic() - began
    assert [[verdict.verdict for verdict in step] for step in verdicts] == [
        ["unknown", "valid"], ["unknown", "invalid"], ["unknown", "valid"],
    ]
    assert verdicts[0][0].reason == "timeout after 200 ms: the check did not stop and was cut off"
    assert {step[0].reason for step in verdicts[1:]} == {
        "not checked: an earlier check of this verifier hung and is still running"}
    assert took < 0.2 + ABANDON_AFTER_MS / 1000 + 1.5  # one timeout for the whole solution, not one per step
    unblock.cancel()
    os.write(blocked.write_end, b"x")  # lets the abandoned check finish
