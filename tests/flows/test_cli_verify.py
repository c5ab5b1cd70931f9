"""End to end: `prmforge verify --processbench` on the hand-made file, with the real verifiers."""

import json
import re
from pathlib import Path

import pytest

from flows.cli import app

HANDMADE = Path(__file__).parents[1] / "data" / "processbench_handmade.jsonl"


@pytest.fixture(scope="module")
def report(runner) -> dict:
    result = runner.invoke(app, ["verify", "--processbench", str(HANDMADE), "--verifiers", "arith,z3,code", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_file_is_read_whole(report):
    assert (report["rows"], report["erroneous"], report["steps"], report["bad_rows"]) == (11, 6, 28, [])


@pytest.mark.parametrize("name", ["arith", "z3"])
def test_arithmetic_verifiers_exact_scores(report, name):
    score = next(s for s in report["verifiers"] if s["verifier"] == name)
    # Unknown: Weng's "12/60 = 0.2 per minute", Natalia's "#### 72", both steps of the boxes row
    # ("7 / 2 = 3 full boxes" is the whole part of a division, not a false claim; its answer
    # line), the doctest step.
    assert (score["steps_known"], score["steps"]) == (23, 28)
    # Invalid: the four real errors at or after the label, and no false alarm.
    assert (score["invalid_verdicts"], score["invalid_correct"], score["invalid_precision"]) == (4, 4, 1.0)
    assert (score["false_alarms"], score["false_alarm_rate"]) == (0, 0.0)
    # Exact on the slip rows (synthetic, Weng, LaTeX); missed: the copy error, Betty's reasoning
    # error (flagged one step late), the code row.
    assert (score["erroneous_exact"], score["erroneous"], score["accuracy_erroneous"]) == (3, 6, 0.5)
    assert (score["correct_exact"], score["correct"], score["accuracy_correct"]) == (5, 5, 1.0)
    assert score["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_code_verifier_exact_scores(report):
    score = next(s for s in report["verifiers"] if s["verifier"] == "code")
    assert (score["steps_known"], score["invalid_verdicts"], score["invalid_correct"]) == (1, 1, 1)
    assert (score["erroneous_exact"], score["correct_exact"]) == (1, 5)
    assert score["f1"] == pytest.approx(2 / 7)


def table_rows(output: str) -> list[list[str]]:
    """The body rows of a rich table, as cell texts."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


def test_the_table_names_every_verifier(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "200")  # one line per row
    monkeypatch.setenv("PATH", str(tmp_path))  # no Lean toolchain, whatever this machine has
    monkeypatch.delenv("PRMFORGE_LEAN", raising=False)
    result = runner.invoke(app, ["verify", "--processbench", str(HANDMADE), "--verifiers", "arith,lean"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"{HANDMADE}: 11 solutions (6 erroneous), 0 bad rows"
    assert "0.667" in result.stdout  # arith's F1
    assert "alarms" in result.stdout and "(0/11)" in result.stdout  # the false-alarm column
    assert "lean" in result.stdout
    rows = table_rows(result.stdout)
    # verifier, coverage, invalid precision, false alarms, acc. erroneous, acc. correct, F1 (ms/step
    # varies): the numbers of test_arithmetic_verifiers_exact_scores; lean, absent, knows no step.
    assert [row[:7] for row in rows] == [
        ["arith", "0.821 (23/28)", "1.000 (4/4)", "0.000 (0/11)", "0.500 (3/6)", "1.000 (5/5)", "0.667"],
        ["lean", "0.000 (0/28)", "- (0/0)", "0.000 (0/11)", "0.000 (0/6)", "1.000 (5/5)", "0.000"],
    ]
    assert all(re.fullmatch(r"\d+\.\d", row[7]) for row in rows), rows


def test_a_missing_file_is_one_line_and_exit_code_one(runner, tmp_path):
    result = runner.invoke(app, ["verify", "--processbench", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 1
    assert result.stderr == f"error: no such file: {tmp_path / 'none.jsonl'}\n"


def test_an_unknown_verifier_is_refused(runner):
    result = runner.invoke(app, ["verify", "--processbench", str(HANDMADE), "--verifiers", "arith,sympy"])
    assert result.exit_code == 1
    assert result.stderr == "error: unknown verifier 'sympy'; choose from: arith, z3, lean, code\n"


def test_bad_rows_are_reported_and_the_rest_is_scored(runner, tmp_path):
    path = tmp_path / "pb.jsonl"
    good = {"id": "g", "problem": "What is 2 + 3?", "steps": ["2 + 3 = 6"], "label": 0}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"id": "b", "problem": "?", "steps": []}) + "\n")
    result = runner.invoke(app, ["verify", "--processbench", str(path), "--verifiers", "arith", "--json"])
    assert result.exit_code == 0
    assert result.stderr == f"skipped {path}:2: missing field(s): label\n"
    report = json.loads(result.stdout)
    assert report["bad_rows"] == [{"line": 2, "reason": "missing field(s): label"}]
    assert report["verifiers"][0]["accuracy_erroneous"] == 1.0


def test_a_file_without_valid_rows_fails(runner, tmp_path):
    path = tmp_path / "pb.jsonl"
    path.write_text("[]\n")
    result = runner.invoke(app, ["verify", "--processbench", str(path)])
    assert result.exit_code == 1
    assert result.stderr.endswith(f"error: {path} has no valid rows (1 bad)\n")
