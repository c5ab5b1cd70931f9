"""Hostile seed files: every bad row is quarantined with a reason, every valid row still lands."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.ingest import IngestError, read_seed_file

VALID = {"question": "Mia has 3 pens. She gets 2 more. How many pens does Mia have now?", "answer": "5"}

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
hostile_rows = st.one_of(
    st.binary(max_size=200),  # random bytes
    json_values.map(lambda value: json.dumps(value, allow_nan=True).encode()),  # wrong types, NaN, infinity
    st.dictionaries(st.sampled_from(["question", "answer", "problem", "solution", "steps"]), json_values, max_size=5)
    .map(lambda row: json.dumps(row, allow_nan=True).encode()),
    st.text(max_size=100).map(lambda text: text.encode("utf-16")),  # another encoding
    st.integers(min_value=1, max_value=2000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.integers(min_value=20_001, max_value=60_000).map(
        lambda size: json.dumps({"question": "q" * size, "answer": "1"}).encode()
    ),  # huge field
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(hostile_rows, max_size=8), position=st.integers(min_value=0, max_value=8))
def test_hostile_rows_never_stop_valid_rows(tmp_path_factory, rows, position):
    valid_line = json.dumps(VALID).encode()
    lines = rows[:position] + [valid_line] + rows[position:]
    path = tmp_path_factory.mktemp("hostile") / "seeds.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines))
    result = read_seed_file(path)
    assert VALID["answer"] in [problem.answer for problem in result.problems]
    for problem in result.problems:
        assert problem.question.strip() and problem.answer.strip()
        assert "\x00" not in problem.question
    for row in result.quarantined:
        assert row.reason and "\n" not in row.reason
        assert len(row.raw) <= 2_000
    # Nothing is lost silently: every non-blank line is either a problem or a quarantine row.
    non_blank = sum(1 for line in b"\n".join(line.replace(b"\n", b" ") for line in lines).split(b"\n") if line.strip())
    assert len(result.problems) + len(result.quarantined) == non_blank


def test_duplicate_ids_are_quarantined(tmp_path):
    path = tmp_path / "dupes.jsonl"
    path.write_text("\n".join(json.dumps(VALID) for _ in range(3)))
    result = read_seed_file(path)
    assert len(result.problems) == 1
    assert [row.reason for row in result.quarantined] == ["duplicate of row 1", "duplicate of row 1"]


def test_infinity_and_nan_as_text_are_plain_answers_but_not_as_numbers(tmp_path):
    path = tmp_path / "inf.jsonl"
    path.write_bytes(
        b'{"question": "q", "answer": Infinity}\n{"question": "q2", "answer": -Infinity}\n'
        b'{"question": "q3", "answer": NaN}\n'
        b'{"question": "q4", "answer": "NaN"}\n{"question": "q5", "answer": "Infinity"}\n'
        b'{"question": "q6", "answer": "-Infinity"}\n'
    )
    result = read_seed_file(path)
    # As JSON strings they are answers like any other text; as bare JSON constants they are refused.
    assert [(problem.source_row, problem.question, problem.answer) for problem in result.problems] == [
        (4, "q4", "NaN"), (5, "q5", "Infinity"), (6, "q6", "-Infinity"),
    ]
    assert [(row.source_row, row.reason) for row in result.quarantined] == [
        (1, "JSON contains Infinity, which is not a number"),
        (2, "JSON contains -Infinity, which is not a number"),
        (3, "JSON contains NaN, which is not a number"),
    ]


def test_nan_and_infinity_as_parquet_floats_are_quarantined(tmp_path):
    import pyarrow
    import pyarrow.parquet

    path = tmp_path / "seeds.parquet"
    table = pyarrow.table({"question": ["q1", "q2", "q3"], "answer": [math.nan, math.inf, 4.0]})
    pyarrow.parquet.write_table(table, path)
    result = read_seed_file(path)
    assert [(problem.question, problem.answer) for problem in result.problems] == [("q3", "4.0")]
    assert [(row.source_row, row.reason) for row in result.quarantined] == [
        (1, "field 'answer' is not a finite number"), (2, "field 'answer' is not a finite number"),
    ]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(min_size=1, max_size=300))
def test_random_bytes_as_parquet_are_refused_with_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("pq") / "seeds.parquet"
    path.write_bytes(content)
    # Random bytes are never a Parquet file (it needs the PAR1 magic at both ends and a valid footer).
    with pytest.raises(IngestError) as refused:
        read_seed_file(path)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"cannot read Parquet file {path}: ")
