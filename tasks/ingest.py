"""Read seed problems from JSONL or Parquet in GSM8K, MATH or prmforge form.

Every row either lands as a Problem or is quarantined with the reason; a file that cannot be read
at all raises IngestError with one line, before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import UserError
from schemas.records import Problem, QuarantinedRow
from tasks.answers import extract_answer
from tasks.ids import problem_id

MAX_FIELD_CHARS = 20_000  # longer questions or answers are almost surely corrupt input
RAW_KEEP_CHARS = 2_000  # how much of a rejected row the quarantine keeps


class IngestError(UserError, RuntimeError):
    """The seed file as a whole cannot be used; the message is one line."""


class RowRejected(ValueError):
    """One row is invalid; the message is the quarantine reason."""


@dataclass(frozen=True)
class IngestResult:
    problems: list[Problem]
    quarantined: list[QuarantinedRow]


def _text_field(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None:
        raise RowRejected(f"missing field '{name}'")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowRejected(f"field '{name}' must be text, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise RowRejected(f"field '{name}' is not a finite number")
    text = str(value).strip()
    if not text:
        raise RowRejected(f"field '{name}' is empty")
    if len(text) > MAX_FIELD_CHARS:
        raise RowRejected(f"field '{name}' is longer than {MAX_FIELD_CHARS} characters")
    if "\x00" in text:
        raise RowRejected(f"field '{name}' contains a NUL character")
    return text


def _steps_field(row: dict) -> tuple[str, ...]:
    steps = row.get("steps")
    if steps is None:
        return ()
    if not isinstance(steps, list) or not all(isinstance(step, str) and step.strip() for step in steps):
        raise RowRejected("field 'steps' must be a list of non-empty strings")
    return tuple(step.strip() for step in steps)


def parse_row(row: object) -> tuple[str, str, str, tuple[str, ...]]:
    """(source form, question, final answer, reference steps) of one seed row, or RowRejected."""
    if not isinstance(row, dict):
        raise RowRejected(f"row is not an object (got {type(row).__name__})")
    if "problem" in row and "solution" in row:
        question = _text_field(row, "problem")
        solution = _text_field(row, "solution")
        answer = extract_answer(solution) if "\\boxed" in solution else None
        if not answer:
            raise RowRejected("MATH solution has no \\boxed{} answer")
        return "math", question, answer, ()
    question = _text_field(row, "question")
    answer_text = _text_field(row, "answer")
    if "####" in answer_text:
        work, _, final = answer_text.rpartition("####")
        final = final.strip()
        if not final:
            raise RowRejected("GSM8K answer has nothing after '####'")
        steps = tuple(line.strip() for line in work.splitlines() if line.strip())
        return "gsm8k", question, final, steps
    return "prmforge", question, answer_text, _steps_field(row)


def _raw(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:RAW_KEEP_CHARS]


def _jsonl_rows(path: Path, data: bytes) -> Iterator[tuple[int, object | RowRejected, str]]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            yield number, RowRejected(f"invalid UTF-8 at byte {error.start}"), _raw(repr(line))
            continue
        try:
            yield number, json.loads(text, parse_constant=_reject_constant), text
        except RecursionError:
            yield number, RowRejected("JSON nested too deeply"), _raw(text)
        except (ValueError, RowRejected) as error:
            reason = str(error) if isinstance(error, RowRejected) else f"malformed JSON: {error}"
            yield number, RowRejected(reason), _raw(text)


def _reject_constant(name: str) -> float:
    raise RowRejected(f"JSON contains {name}, which is not a number")


def _parquet_rows(path: Path) -> Iterator[tuple[int, object | RowRejected, str]]:
    import pyarrow.parquet as parquet

    try:
        table = parquet.read_table(path)
    except Exception as error:  # pyarrow raises several unrelated types for a broken file
        raise IngestError(f"cannot read Parquet file {path}: {str(error).splitlines()[0]}") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row, _raw(json.dumps(row, default=str))


def read_seed_file(path: Path) -> IngestResult:
    """All problems of a seed file, plus the rows it quarantined (with reasons)."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"seed file not found: {path}")
    if not path.is_file():
        raise IngestError(f"seed path is not a file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        rows = _parquet_rows(path)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        try:
            data = path.read_bytes()
        except OSError as error:
            raise IngestError(f"cannot read seed file {path}: {error.strerror}") from None
        rows = _jsonl_rows(path, data)
    else:
        raise IngestError(f"unsupported seed file type '{suffix}': use .jsonl or .parquet")
    return validate_rows(str(path), rows)


def validate_rows(source_file: str, rows: Iterator[tuple[int, object | RowRejected, str]]) -> IngestResult:
    problems: list[Problem] = []
    quarantined: list[QuarantinedRow] = []
    first_row_of: dict[str, int] = {}
    for number, row, raw in rows:
        try:
            if isinstance(row, RowRejected):
                raise row
            form, question, answer, steps = parse_row(row)
            identity = problem_id(question, answer)
            if identity in first_row_of:
                raise RowRejected(f"duplicate of row {first_row_of[identity]}")
        except RowRejected as rejection:
            quarantined.append(QuarantinedRow(source_file, number, raw[:RAW_KEEP_CHARS], str(rejection)))
            continue
        except RecursionError:
            quarantined.append(QuarantinedRow(source_file, number, raw[:RAW_KEEP_CHARS], "JSON nested too deeply"))
            continue
        first_row_of[identity] = number
        problems.append(
            Problem(identity, question, answer, form, steps, source_file=source_file, source_row=number)
        )
    return IngestResult(problems, quarantined)
