import json

import polars as pl
import pytest

from tasks.ingest import IngestError, read_seed_file

GOOD_GSM8K = {"question": "Natalia sold 48 clips. How many?", "answer": "She sold 48 + 24 = 72.\n#### 72"}
GOOD_MATH = {"problem": "What is half of 1?", "solution": "Half is $\\boxed{\\frac{1}{2}}$."}
GOOD_OWN = {"question": "Mia has 2 pens. She gets 3 more.", "answer": "5", "steps": ["Step 1: 2 + 3 = 5"]}


def write_lines(path, lines: list[bytes]):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_rows_are_quarantined_and_every_valid_row_lands(tmp_path):
    seed_file = write_lines(
        tmp_path / "seeds.jsonl",
        [
            json.dumps(GOOD_GSM8K).encode(),
            b'{"question": "broken", ',  # malformed JSON
            json.dumps({"question": "What is 1+1?"}).encode(),  # missing answer
            json.dumps({"question": "   ", "answer": "3"}).encode(),  # empty problem
            b'{"question": "caf\xe9?", "answer": "1"}',  # invalid UTF-8 (latin-1 byte)
            json.dumps(GOOD_MATH).encode(),
            json.dumps({"problem": "No box", "solution": "It is 3."}).encode(),
            json.dumps(GOOD_OWN).encode(),
            json.dumps(GOOD_GSM8K).encode(),  # duplicate
        ],
    )
    result = read_seed_file(seed_file)
    assert [(p.source, p.answer) for p in result.problems] == [("gsm8k", "72"), ("math", "\\frac{1}{2}"), ("prmforge", "5")]
    assert result.problems[0].reference_steps == ("She sold 48 + 24 = 72.",)
    assert result.problems[2].reference_steps == ("Step 1: 2 + 3 = 5",)
    reasons = {row.source_row: row.reason for row in result.quarantined}
    assert set(reasons) == {2, 3, 4, 5, 7, 9}
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3] == "missing field 'answer'"
    assert reasons[4] == "field 'question' is empty"
    assert reasons[5].startswith("invalid UTF-8")
    assert reasons[7] == "MATH solution has no \\boxed{} answer"
    assert reasons[9] == "duplicate of row 1"


def test_parquet_seed_file(tmp_path):
    path = tmp_path / "seeds.parquet"
    pl.DataFrame([GOOD_GSM8K, {"question": None, "answer": "2"}]).write_parquet(path)
    result = read_seed_file(path)
    assert [p.answer for p in result.problems] == ["72"]
    assert [q.reason for q in result.quarantined] == ["missing field 'question'"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ([1, 2], "row is not an object (got list)"),
        ({"question": "q", "answer": True}, "field 'answer' must be text, got bool"),
        ({"question": "q", "answer": {"a": 1}}, "field 'answer' must be text, got dict"),
        ({"question": "q", "answer": "x" * 20_001}, "field 'answer' is longer than 20000 characters"),
        ({"question": "q", "answer": "It is 3\n####  "}, "GSM8K answer has nothing after '####'"),
        ({"question": "q", "answer": "3", "steps": "one"}, "field 'steps' must be a list of non-empty strings"),
    ],
)
def test_invalid_rows_have_reasons(tmp_path, row, reason):
    path = write_lines(tmp_path / "one.jsonl", [json.dumps(row).encode()])
    result = read_seed_file(path)
    assert result.problems == []
    assert [q.reason for q in result.quarantined] == [reason]


def test_nan_and_numbers(tmp_path):
    path = write_lines(tmp_path / "n.jsonl", [b'{"question": "q", "answer": NaN}', b'{"question": "q2", "answer": 7}'])
    result = read_seed_file(path)
    assert [p.answer for p in result.problems] == ["7"]
    assert [q.reason for q in result.quarantined] == ["JSON contains NaN, which is not a number"]


def test_missing_unreadable_and_unsupported_files_raise_one_line(tmp_path):
    with pytest.raises(IngestError, match="seed file not found"):
        read_seed_file(tmp_path / "absent.jsonl")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(IngestError, match="cannot read Parquet file") as caught:
        read_seed_file(broken)
    assert "\n" not in str(caught.value)
    with pytest.raises(IngestError, match="unsupported seed file type"):
        read_seed_file(tmp_path / "x.csv") if (tmp_path / "x.csv").write_text("a") else None
    with pytest.raises(IngestError, match="not a file"):
        read_seed_file(tmp_path)
