"""The hand-written corpora of realistic LLM solutions: every step's arith and z3 verdict is pinned.

tests/data/verifier_corpus/ (dev, heldout) and the independent blind audit's
tests/data/verifier_blind/ (audit, heldout, check, round4, round5), each with its verdicts.json.
round4 was a blind part: its first run's two z3 false alarms were pinned as they were, then read and
fixed (bench/RESULTS.md, "round4's z3 false alarms, read and fixed"), so it is a development part
now and in the no-false-alarm test like the others. round5 is blind: its first run's verdicts are
pinned as they are, its one z3 false alarm included, and it stays out of the no-false-alarm test.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from tasks.processbench import read_processbench, score_verifier
from tasks.verifiers.arith import ArithConfig, ArithVerifier
from tasks.verifiers.base import StepContext
from tasks.verifiers.z3_verifier import Z3Config, Z3Verifier

DATA = Path(__file__).parents[2] / "data"
CORPORA = {"verifier_corpus": ("dev", "heldout"), "verifier_blind": ("audit", "heldout", "check", "round4", "round5")}
PARTS = [(corpus, part) for corpus, parts in CORPORA.items() for part in parts]
# Blind parts whose false alarms are recorded, not fixed: round5's first run gave z3 one (1/174).
UNFIXED: set[tuple[str, str]] = {("verifier_blind", "round5")}
SMALLEST = {"verifier_corpus": 300, "verifier_blind": 700}  # steps in all parts together


def _build_module(corpus: str):
    spec = importlib.util.spec_from_file_location(f"{corpus}_build", DATA / corpus / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_jsonl_files_are_built_from_the_sources():
    parse = _build_module("verifier_corpus")
    for corpus, part in PARTS:
        rows = parse.parse_corpus((DATA / corpus / f"{part}.txt").read_text(encoding="utf-8"), part)
        assert (DATA / corpus / f"{part}.jsonl").read_text(encoding="utf-8") == parse.jsonl(rows)
    assert _build_module("verifier_blind").main(["--check"]) == 0


@pytest.mark.parametrize("corpus", sorted(CORPORA))
def test_each_label_is_the_first_gold_invalid_step_and_the_corpus_is_large_enough(corpus):
    steps = 0
    for part in CORPORA[corpus]:
        for line in (DATA / corpus / f"{part}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            assert len(row["step_gold"]) == len(row["steps"]) == len(row["tags"])
            gold = row["step_gold"]
            assert row["label"] == (gold.index("invalid") if "invalid" in gold else -1), row["id"]
            steps += len(row["steps"])
    assert steps >= SMALLEST[corpus]


@pytest.fixture(scope="module")
def verdicts():
    """part -> (rows, verifier -> verdicts per row), with step limits no busy machine reaches."""
    verifiers = [ArithVerifier(ArithConfig(timeout_ms=60_000)), Z3Verifier(Z3Config(timeout_ms=60_000))]
    result = {}
    for corpus, part in PARTS:
        rows, bad = read_processbench(DATA / corpus / f"{part}.jsonl")
        assert bad == []
        result[corpus, part] = (rows, {
            verifier.name: [
                [verifier.verify(step, StepContext(row.problem, row.steps[:index])) for index, step in enumerate(row.steps)]
                for row in rows
            ]
            for verifier in verifiers
        })
    return result


@pytest.mark.parametrize("corpus, part", PARTS)
def test_every_step_verdict_is_pinned(verdicts, corpus, part):
    pins = json.loads((DATA / corpus / "verdicts.json").read_text(encoding="utf-8"))[part]
    rows, by_verifier = verdicts[corpus, part]
    current = {
        row.id: {name: "".join(v.verdict[0] for v in per_row[index]) for name, per_row in by_verifier.items()}
        for index, row in enumerate(rows)
    }
    assert current == pins


@pytest.mark.parametrize("corpus, part", [item for item in PARTS if item not in UNFIXED])
@pytest.mark.parametrize("name", ["arith", "z3"])
def test_no_false_alarm_and_every_invalid_verdict_at_or_after_the_error(verdicts, corpus, part, name):
    rows, by_verifier = verdicts[corpus, part]
    score = score_verifier(name, rows, by_verifier[name])
    assert (score.false_alarms, score.invalid_precision) == (0, 1.0)
    assert score.coverage >= 0.09
