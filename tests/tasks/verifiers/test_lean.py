import shutil
import stat
from pathlib import Path

import pytest
import sympy

from tasks.verifiers.base import StepContext
from tasks.verifiers.reading import extract_claims
from tasks.verifiers.lean import (
    LeanConfig,
    LeanFile,
    LeanMessage,
    LeanTheorem,
    LeanVerifier,
    emit_lean_file,
    judge_lean_output,
    lean_status,
    parse_lean_messages,
)

PROBLEM = StepContext("Mia has 21 apples.")
INT_TACTIC = "by first | decide | omega"


def claims(text: str):
    return extract_claims(text).claims


# --- emission ---------------------------------------------------------------------------------


def test_int_claim_and_its_refutation():
    lean_file = emit_lean_file(claims("Step 2: 21 - 3 = 18"))
    assert lean_file.text.splitlines()[2:] == [
        f"theorem step_claim_1 : (21 : Int) - (3 : Int) = (18 : Int) := {INT_TACTIC}",
        f"theorem step_claim_1_refuted : ¬ ((21 : Int) - (3 : Int) = (18 : Int)) := {INT_TACTIC}",
    ]
    assert lean_file.theorems == (
        LeanTheorem("step_claim_1", 1, False, 3),
        LeanTheorem("step_claim_1_refuted", 1, True, 4),
    )
    assert lean_file.skipped == ()


def test_precedence_powers_negatives_and_inequalities():
    text = emit_lean_file(claims("(3 + 4) * 2 = 14, 3 - (4 - 5) = 4, -3 + 5 = 2, 2^10 >= 1000")).text
    propositions = [
        line.split(" : ", 1)[1].split(" := ")[0]
        for line in text.splitlines()
        if "_refuted" not in line and line.startswith("theorem")
    ]
    assert propositions == [
        "((3 : Int) + (4 : Int)) * (2 : Int) = (14 : Int)",
        "(3 : Int) - ((4 : Int) - (5 : Int)) = (4 : Int)",
        "(-3 : Int) + (5 : Int) = (2 : Int)",
        "(2 : Int) ^ (10 : Nat) ≥ (1000 : Int)",
    ]


def test_rational_claims_need_mathlib():
    without = emit_lean_file(claims("$\\frac{1}{2} \\times 8 = 4$"))
    assert without.theorems == ()
    assert without.skipped == (
        (1, "rational claim needs Mathlib (set LeanConfig.mathlib inside a Mathlib project)"),
    )
    with_mathlib = emit_lean_file(claims("$\\frac{1}{2} \\times 8 = 4$"), mathlib=True)
    lines = with_mathlib.text.splitlines()
    assert lines[0] == "import Mathlib"
    assert lines[3] == (
        "theorem step_claim_1 : (((1 : Rat)) / ((2 : Rat))) * (8 : Rat) = (4 : Rat) := by first | norm_num | decide | omega"
    )


def test_assignments_bind_and_free_symbols_are_skipped():
    lean_file = emit_lean_file(claims("x = 3*4 = 12, so x + 2 = 14, and y = x + z"))
    assert [theorem.name for theorem in lean_file.theorems if not theorem.refutation] == [
        "step_claim_2",
        "step_claim_3",
    ]
    assert "theorem step_claim_3 : (12 : Int) + (2 : Int) = (14 : Int)" in lean_file.text
    assert lean_file.theorems[-1].line == 6
    bound = emit_lean_file(claims("x * 2 = 24"), {sympy.Symbol("x"): sympy.Integer(12)})
    assert "(12 : Int) * (2 : Int) = (24 : Int)" in bound.text
    assert emit_lean_file(claims("x + 1 = 2")).skipped == ((1, "free symbol x"),)


def test_division_by_zero_is_never_emitted():
    assert emit_lean_file(claims("12 / 0 = 0"), mathlib=True).skipped == (
        (1, "division by zero (Lean defines x / 0 = 0)"),
    )


# --- messages ---------------------------------------------------------------------------------

OUTPUT = """/tmp/x/StepClaims.lean:4:57: error: decide failed: proposition
  ¬(21 : Int) - 3 = 18
is false
/tmp/x/StepClaims.lean:5:0: warning: unused variable
error: ./StepClaims.lean:6:2: unsolved goals
⊢ False"""


def test_parse_messages_both_forms_and_continuations():
    assert parse_lean_messages(OUTPUT) == (
        LeanMessage(
            "/tmp/x/StepClaims.lean",
            4,
            57,
            "error",
            "decide failed: proposition\n  ¬(21 : Int) - 3 = 18\nis false",
        ),
        LeanMessage("/tmp/x/StepClaims.lean", 5, 0, "warning", "unused variable"),
        LeanMessage("./StepClaims.lean", 6, 2, "error", "unsolved goals\n⊢ False"),
    )
    assert parse_lean_messages("") == ()


def test_judge_claim_checked_refuted_neither_and_preamble():
    lean_file = LeanFile(
        text="",
        theorems=(
            LeanTheorem("step_claim_1", 1, False, 3),
            LeanTheorem("step_claim_1_refuted", 1, True, 4),
            LeanTheorem("step_claim_2", 2, False, 5),
            LeanTheorem("step_claim_2_refuted", 2, True, 6),
            LeanTheorem("step_claim_3", 3, False, 7),
            LeanTheorem("step_claim_3_refuted", 3, True, 8),
        ),
        skipped=(),
    )
    messages = (
        LeanMessage("f", 4, 0, "error", "decide failed"),
        LeanMessage("f", 5, 0, "error", "decide failed: is false"),
        LeanMessage("f", 7, 0, "error", "omega failed"),
        LeanMessage("f", 8, 0, "error", "omega failed"),
    )
    outcomes = [(o.claim_index, o.outcome, o.detail) for o in judge_lean_output(lean_file, messages)]
    assert outcomes == [
        (1, "valid", "step_claim_1 checked"),
        (2, "invalid", "step_claim_2 refuted; lean: decide failed: is false"),
        (3, "unknown", "lean proved neither step_claim_3 nor its negation: omega failed | omega failed"),
    ]
    preamble = judge_lean_output(lean_file, (LeanMessage("f", 1, 0, "error", "unknown package 'Mathlib'"),))
    assert {o.outcome for o in preamble} == {"unknown"}
    assert preamble[0].detail == "lean could not start checking: unknown package 'Mathlib'"


# --- running ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_configured_lean(monkeypatch):
    """The developer's own PRMFORGE_LEAN must not leak into these tests."""
    monkeypatch.delenv("PRMFORGE_LEAN", raising=False)


NO_LEAN = (
    "lean unavailable: no `lean` on PATH (install Lean 4 with elan, or set PRMFORGE_LEAN to the command that runs it)"
)


def test_no_lean_gives_lean_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    verdict = LeanVerifier().verify("21 - 3 = 18", PROBLEM)
    assert (verdict.verifier, verdict.verdict, verdict.reason) == ("lean", "unknown", "lean unavailable")
    assert lean_status() == NO_LEAN
    missing = LeanConfig(lean_command=(str(tmp_path / "nowhere" / "lean"),))
    assert LeanVerifier(missing).verify("21 - 3 = 18", PROBLEM).reason == "lean unavailable"
    assert lean_status(missing).startswith("lean unavailable: configured command")


def _fake_lean(folder: Path, body: str) -> Path:
    path = folder / "lean"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_fake_toolchain_on_path_runs_and_its_messages_are_judged(monkeypatch, tmp_path):
    # Lines 3 and 4 hold the claim and its refutation (see test_int_claim_and_its_refutation).
    _fake_lean(
        tmp_path,
        'if [ "$1" = --version ]; then echo "Lean (version 4.0.0-fake)"; exit 0; fi\n'
        'echo "$1:4:60: error: decide failed: proposition is false"\nexit 1\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    verdict = LeanVerifier().verify("21 - 3 = 18", PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("valid", "21 - 3 = 18: step_claim_1 checked")
    assert lean_status() == f"lean found at {tmp_path / 'lean'}: Lean (version 4.0.0-fake)"


def test_fake_toolchain_refutes_a_claim(tmp_path):
    fake = _fake_lean(tmp_path, 'echo "$1:3:50: error: decide failed: proposition is false"\nexit 1\n')
    verdict = LeanVerifier(LeanConfig(lean_command=(str(fake),))).verify("21 - 3 = 17", PROBLEM)
    assert verdict.verdict == "invalid"
    assert verdict.evidence == "21 - 3 = 17: step_claim_1 refuted; lean: decide failed: proposition is false"


def test_lean_time_limit_kills_the_toolchain(tmp_path):
    fake = _fake_lean(tmp_path, "sleep 30\n")
    verdict = LeanVerifier(LeanConfig(lean_command=(str(fake),), timeout_ms=300)).verify(
        "21 - 3 = 18", PROBLEM
    )
    assert (verdict.verdict, verdict.reason) == ("unknown", "lean timeout after 300 ms")
    assert verdict.ms < 5000


def test_prmforge_lean_names_the_toolchain(monkeypatch, tmp_path):
    fake = _fake_lean(tmp_path, 'echo "$1:4:60: error: decide failed: proposition is false"\nexit 1\n')
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("PRMFORGE_LEAN", str(fake))
    assert LeanConfig().lean_command == (str(fake),)
    assert LeanVerifier().verify("21 - 3 = 18", PROBLEM).verdict == "valid"
    from tasks.verifiers import get_verifier

    assert get_verifier("lean").config.lean_command == (str(fake),)  # what generate runs
    monkeypatch.setenv("PRMFORGE_LEAN", "lake env lean")  # a command line, split like a shell would
    assert LeanConfig().lean_command == ("lake", "env", "lean")
    monkeypatch.setenv("PRMFORGE_LEAN", str(tmp_path / "nowhere" / "lean"))
    assert LeanVerifier().verify("21 - 3 = 18", PROBLEM).reason == "lean unavailable"
    assert lean_status() == (
        f"lean unavailable: configured command '{tmp_path / 'nowhere' / 'lean'}' not found "
        "(install Lean 4 with elan, or set PRMFORGE_LEAN to the command that runs it)"
    )


def _doctor(data_dir: Path, env: dict[str, str]) -> list[str]:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["doctor", "--data-dir", str(data_dir)], env=env)
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line.startswith("lean: ")]


def test_doctor_says_lean_unavailable_or_names_the_configured_toolchain(tmp_path):
    fake = _fake_lean(tmp_path, 'if [ "$1" = --version ]; then echo "Lean (version 4.9.0-fake)"; fi\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _doctor(tmp_path / "data", {"PATH": str(empty), "PRMFORGE_LEAN": ""}) == [f"lean: {NO_LEAN}"]
    assert _doctor(tmp_path / "data", {"PATH": str(empty), "PRMFORGE_LEAN": str(fake)}) == [
        f"lean: lean found at {fake}: Lean (version 4.9.0-fake)"
    ]
    missing = tmp_path / "elan" / "bin" / "lean"
    lines = _doctor(tmp_path / "data", {"PATH": str(empty), "PRMFORGE_LEAN": str(missing)})
    assert lines == [f"lean: lean unavailable: configured command '{missing}' not found (install Lean 4 with elan, "
                     "or set PRMFORGE_LEAN to the command that runs it)"]


@pytest.mark.skipif(shutil.which("lean") is None, reason="lean unavailable")
def test_real_lean_checks_and_refutes():
    verifier = LeanVerifier()
    assert verifier.verify("Step 1: 21 - 3 = 18", PROBLEM).verdict == "valid"
    assert verifier.verify("Step 1: 21 - 3 = 17", PROBLEM).verdict == "invalid"
    assert verifier.verify("Since 2^10 > 1000 we go on", PROBLEM).verdict == "valid"
