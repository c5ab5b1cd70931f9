import json

import pytest

from schemas.records import Verdict
from tasks.processbench import (
    BadRow,
    ProcessBenchError,
    ProcessBenchRow,
    evaluate_verifiers,
    parse_row,
    predicted_first_error,
    processbench_f1,
    read_processbench,
    score_verifier,
)
from tasks.verifiers.base import StepContext

GOOD = {"id": "r1", "problem": "1 + 1?", "steps": ["1 + 1 = 2"], "label": -1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": True}, "id must be a non-empty string or an integer"),
        ({"id": " "}, "id must be a non-empty string or an integer"),
        ({"problem": ""}, "problem must be a non-empty string"),
        ({"steps": []}, "steps must be a non-empty list of strings"),
        ({"steps": "1 + 1 = 2"}, "steps must be a non-empty list of strings"),
        ({"steps": ["a", 3]}, "steps must be a non-empty list of strings"),
        ({"label": "0"}, "label must be an integer, got '0'"),
        ({"label": False}, "label must be an integer, got False"),
        ({"label": 1}, "label 1 is out of range for 1 step(s): use -1 or 0..0"),
        ({"label": -2}, "label -2 is out of range for 1 step(s): use -1 or 0..0"),
    ],
)
def test_parse_row_rejects_with_a_reason(change, message):
    with pytest.raises(ValueError) as raised:
        parse_row({**GOOD, **change})
    assert str(raised.value) == message


def test_parse_row_names_missing_fields_and_non_objects():
    with pytest.raises(ValueError, match=r"^missing field\(s\): steps, label$"):
        parse_row({"id": "x", "problem": "p"})
    with pytest.raises(ValueError, match="^a row must be a JSON object, got list$"):
        parse_row([1])


def test_read_processbench_keeps_good_rows_and_reports_bad_lines(tmp_path):
    path = tmp_path / "pb.jsonl"
    lines = [json.dumps(GOOD), "", "{not json", json.dumps({**GOOD, "label": 5}), json.dumps(GOOD),
             json.dumps({**GOOD, "id": 2, "label": 0})]
    path.write_text("\n".join(lines) + "\n")
    rows, bad = read_processbench(path)
    assert rows == [ProcessBenchRow("r1", "1 + 1?", ("1 + 1 = 2",), -1), ProcessBenchRow("2", "1 + 1?", ("1 + 1 = 2",), 0)]
    assert bad == [
        BadRow(3, "not JSON: Expecting property name enclosed in double quotes at column 2"),
        BadRow(4, "label 5 is out of range for 1 step(s): use -1 or 0..0"),
        BadRow(5, "duplicate id 'r1'"),
    ]


def test_a_missing_file_is_one_error(tmp_path):
    with pytest.raises(ProcessBenchError, match=f"^no such file: {tmp_path / 'nope.jsonl'}$"):
        read_processbench(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(("erroneous", "correct", "f1"), [(0.5, 1.0, 2 / 3), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (0.2, 0.8, 0.32)])
def test_processbench_f1(erroneous, correct, f1):
    assert processbench_f1(erroneous, correct) == pytest.approx(f1, abs=1e-12)


def test_processbench_f1_rejects_values_outside_the_unit_interval():
    with pytest.raises(ValueError, match="accuracies are shares in"):
        processbench_f1(59.1, 1.0)


def verdict_row(values: str) -> list[Verdict]:
    words = {"v": "valid", "u": "unknown", "i": "invalid"}
    return [Verdict("x", words[letter], ms=2.0) for letter in values]


def test_predicted_first_error_is_the_first_invalid_step():
    assert [predicted_first_error(verdict_row(v)) for v in ("vui", "uuu", "ivi")] == [2, -1, 0]


def test_score_verifier_counts_exactly():
    rows = [
        ProcessBenchRow("a", "p", ("1", "2", "3"), 1),   # invalid at 1 and 2: exact, both count as right
        ProcessBenchRow("b", "p", ("1", "2", "3"), 2),   # invalid at 0, before the label: wrong, not exact
        ProcessBenchRow("c", "p", ("1", "2"), -1),       # nothing invalid: correct solution, exact
        ProcessBenchRow("d", "p", ("1", "2"), -1),       # invalid on a correct solution: wrong
        ProcessBenchRow("e", "p", ("1", "2"), 0),        # all unknown: predicts -1, not exact
    ]
    verdicts = [verdict_row("vii"), verdict_row("ivu"), verdict_row("vu"), verdict_row("ui"), verdict_row("uu")]
    score = score_verifier("x", rows, verdicts)
    assert (score.steps, score.steps_known, score.coverage) == (12, 7, 7 / 12)
    assert (score.invalid_verdicts, score.invalid_correct, score.invalid_precision) == (4, 2, 0.5)
    # b: first invalid before the label; d: an invalid on a correct solution. a is not one.
    assert (score.false_alarms, score.false_alarm_rate) == (2, 0.4)
    assert (score.erroneous, score.erroneous_exact, score.accuracy_erroneous) == (3, 1, 1 / 3)
    assert (score.correct, score.correct_exact, score.accuracy_correct) == (2, 1, 0.5)
    assert score.f1 == pytest.approx(0.4)
    assert score.ms_per_step == 2.0


def test_a_false_alarm_counts_once_per_solution_and_only_before_the_first_error():
    rows = [
        ProcessBenchRow("a", "p", ("1", "2", "3"), 1),  # invalid at 0 and 2: one false alarm
        ProcessBenchRow("b", "p", ("1", "2", "3"), 0),  # invalid at 2, after the error: none
        ProcessBenchRow("c", "p", ("1", "2"), -1),  # invalid twice on a correct solution: one
    ]
    score = score_verifier("x", rows, [verdict_row("ivi"), verdict_row("uvi"), verdict_row("ii")])
    assert (score.false_alarms, score.false_alarm_rate) == (2, 2 / 3)
    assert (score.invalid_verdicts, score.invalid_correct) == (5, 2)


def test_score_without_correct_solutions_has_no_f1_and_no_invalid_has_no_precision():
    score = score_verifier("x", [ProcessBenchRow("a", "p", ("1",), 0)], [verdict_row("v")])
    assert (score.accuracy_correct, score.f1, score.invalid_precision) == (None, None, None)


def test_evaluate_verifiers_runs_each_verifier_over_each_row():
    class SaysInvalidOnX:
        name = "xs"

        def verify(self, step_text: str, context: StepContext) -> Verdict:
            return Verdict(self.name, "invalid" if "x" in step_text else "valid")

    rows = [ProcessBenchRow("a", "p", ("ok", "x"), 1), ProcessBenchRow("b", "p", ("ok",), -1)]
    (score,) = evaluate_verifiers(rows, [SaysInvalidOnX()])
    assert (score.verifier, score.accuracy_erroneous, score.accuracy_correct, score.f1) == ("xs", 1.0, 1.0, 1.0)


def test_docstring_examples():
    import doctest

    import tasks.processbench as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0
