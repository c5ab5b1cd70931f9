"""Score step verifiers on a ProcessBench-format file: `id`, `problem`, `steps`, `label`.

`label` is the 0-based index of the first wrong step, or -1 when every step is correct. Per
verifier:
- coverage: the share of steps whose verdict is not unknown.
- invalid precision: the share of invalid verdicts that fall on a wrong step. ProcessBench labels
  only the FIRST wrong step, so we count an invalid verdict as right when it is at or after the
  label (the prefix already holds an error), and as wrong when it is before the label or the
  solution has no error. Steps after the first error are not all wrong, so this is an upper
  bound on step-level precision; None when the verifier says invalid nowhere.
- false-alarm rate: the stricter score, per solution: the share of solutions whose first invalid
  verdict comes before the first wrong step, or that get any invalid verdict though they have no
  error. A verifier that cries wolf once per solution has a high rate even when most of its
  invalid verdicts fall after an error.
- first-error accuracy, as ProcessBench defines it: the predicted first error is the first
  invalid step (-1 if none). Accuracy on erroneous solutions counts exact index matches; on
  correct ones, predictions of -1. F1 is their harmonic mean (`processbench_f1`).
A verifier that is unknown everywhere predicts -1 everywhere: perfect on correct solutions, zero
on erroneous ones, F1 0. Coverage shows that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import UserError
from schemas.records import Verdict
from tasks.verification import verify_solution
from tasks.verifiers import Verifier
from tasks.verifiers.base import INVALID, UNKNOWN


class ProcessBenchError(UserError):
    """The file cannot be read at all; the message says which and why, in one line."""


@dataclass(frozen=True)
class ProcessBenchRow:
    id: str
    problem: str
    steps: tuple[str, ...]
    label: int  # 0-based first wrong step, -1 if none


@dataclass(frozen=True)
class BadRow:
    """A line that is not a valid row, kept with the reason instead of failing the whole file."""

    line: int  # 1-based
    reason: str


def parse_row(payload: object) -> ProcessBenchRow:
    """A validated row; ValueError says what is wrong.

    >>> parse_row({"id": 7, "problem": "1+1?", "steps": ["1 + 1 = 2"], "label": -1}).id
    '7'
    >>> parse_row({"id": "a", "problem": "?", "steps": ["x"], "label": 1})
    Traceback (most recent call last):
    ...
    ValueError: label 1 is out of range for 1 step(s): use -1 or 0..0
    """
    if not isinstance(payload, dict):
        raise ValueError(f"a row must be a JSON object, got {type(payload).__name__}")
    missing = [key for key in ("id", "problem", "steps", "label") if key not in payload]
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    identifier, problem, steps, label = payload["id"], payload["problem"], payload["steps"], payload["label"]
    if not isinstance(identifier, (str, int)) or isinstance(identifier, bool) or not str(identifier).strip():
        raise ValueError("id must be a non-empty string or an integer")
    if not isinstance(problem, str) or not problem.strip():
        raise ValueError("problem must be a non-empty string")
    if not isinstance(steps, list) or not steps:
        raise ValueError("steps must be a non-empty list of strings")
    if not all(isinstance(step, str) for step in steps):
        raise ValueError("steps must be a non-empty list of strings")
    if not isinstance(label, int) or isinstance(label, bool):
        raise ValueError(f"label must be an integer, got {label!r}")
    if not -1 <= label < len(steps):
        raise ValueError(f"label {label} is out of range for {len(steps)} step(s): use -1 or 0..{len(steps) - 1}")
    return ProcessBenchRow(str(identifier), problem, tuple(steps), label)


def read_processbench(path: Path) -> tuple[list[ProcessBenchRow], list[BadRow]]:
    """The valid rows of a JSONL file and the bad lines with their reasons (blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProcessBenchError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ProcessBenchError(f"cannot read {path}: {error}") from None
    rows: list[ProcessBenchRow] = []
    bad: list[BadRow] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = parse_row(json.loads(line))
        except json.JSONDecodeError as error:
            bad.append(BadRow(number, f"not JSON: {error.msg} at column {error.colno}"))
            continue
        except ValueError as error:
            bad.append(BadRow(number, str(error)))
            continue
        if row.id in seen:
            bad.append(BadRow(number, f"duplicate id {row.id!r}"))
            continue
        seen.add(row.id)
        rows.append(row)
    return rows, bad


def processbench_f1(acc_erroneous: float, acc_correct: float) -> float:
    """ProcessBench's F1: the harmonic mean of the accuracies on erroneous and correct solutions.

    >>> processbench_f1(0.5, 1.0)
    0.6666666666666666
    >>> processbench_f1(0.0, 1.0)
    0.0
    >>> processbench_f1(0.0, 0.0)
    0.0
    """
    for value in (acc_erroneous, acc_correct):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"accuracies are shares in [0, 1], got {value}")
    total = acc_erroneous + acc_correct
    return 0.0 if total == 0 else 2 * acc_erroneous * acc_correct / total


def predicted_first_error(verdicts: Sequence[Verdict]) -> int:
    """The first invalid step of a solution, -1 if none."""
    return next((index for index, verdict in enumerate(verdicts) if verdict.verdict == INVALID), -1)


@dataclass(frozen=True)
class VerifierScore:
    verifier: str
    steps: int
    steps_known: int
    coverage: float
    invalid_verdicts: int
    invalid_correct: int
    invalid_precision: float | None
    false_alarms: int  # solutions with an invalid verdict before the first wrong step (or none)
    false_alarm_rate: float
    erroneous: int
    erroneous_exact: int
    accuracy_erroneous: float | None
    correct: int
    correct_exact: int
    accuracy_correct: float | None
    f1: float | None
    ms_per_step: float


def score_verifier(name: str, rows: Sequence[ProcessBenchRow], verdicts: Sequence[Sequence[Verdict]]) -> VerifierScore:
    """One verifier's scores from its verdicts, `verdicts[r][s]` for row r, step s."""
    steps = known = invalid = invalid_right = erroneous = erroneous_exact = correct = correct_exact = 0
    false_alarms = 0
    ms = 0.0
    for row, row_verdicts in zip(rows, verdicts, strict=True):
        for index, verdict in enumerate(row_verdicts):
            steps += 1
            ms += verdict.ms
            known += verdict.verdict != UNKNOWN
            if verdict.verdict == INVALID:
                invalid += 1
                invalid_right += row.label != -1 and index >= row.label
        predicted = predicted_first_error(row_verdicts)
        false_alarms += predicted != -1 and (row.label == -1 or predicted < row.label)
        if row.label == -1:
            correct += 1
            correct_exact += predicted == -1
        else:
            erroneous += 1
            erroneous_exact += predicted == row.label
    accuracy_erroneous = erroneous_exact / erroneous if erroneous else None
    accuracy_correct = correct_exact / correct if correct else None
    f1 = None
    if accuracy_erroneous is not None and accuracy_correct is not None:
        f1 = processbench_f1(accuracy_erroneous, accuracy_correct)
    return VerifierScore(
        verifier=name,
        steps=steps,
        steps_known=known,
        coverage=known / steps if steps else 0.0,
        invalid_verdicts=invalid,
        invalid_correct=invalid_right,
        invalid_precision=invalid_right / invalid if invalid else None,
        false_alarms=false_alarms,
        false_alarm_rate=false_alarms / len(rows) if rows else 0.0,
        erroneous=erroneous,
        erroneous_exact=erroneous_exact,
        accuracy_erroneous=accuracy_erroneous,
        correct=correct,
        correct_exact=correct_exact,
        accuracy_correct=accuracy_correct,
        f1=f1,
        ms_per_step=ms / steps if steps else 0.0,
    )


def evaluate_verifiers(
    rows: Sequence[ProcessBenchRow], verifiers: Sequence[Verifier], budget_ms: float | None = None
) -> list[VerifierScore]:
    """Run every verifier over every row's steps and score each one."""
    per_row = [verify_solution(row.problem, row.steps, verifiers, budget_ms) for row in rows]
    return [
        score_verifier(verifier.name, rows, [[step[position] for step in row] for row in per_row])
        for position, verifier in enumerate(verifiers)
    ]
