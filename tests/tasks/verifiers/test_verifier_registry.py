import subprocess
import sys
import threading
import time

import pytest

from schemas.records import Verdict
from tasks.verifiers import VERIFIER_NAMES, get_verifier
from tasks.verifiers.base import ABANDON_AFTER_MS, Deadline, StepContext, Verifier, VerifierTimeout, run_guarded


def test_every_name_gives_a_verifier_of_that_name():
    assert VERIFIER_NAMES == ("arith", "z3", "lean", "code")
    for name in VERIFIER_NAMES:
        verifier = get_verifier(name)
        assert isinstance(verifier, Verifier)
        assert verifier.name == name


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown verifier 'sympy'; choose one of: arith, z3, lean, code"):
        get_verifier("sympy")


NO_LEAN = (
    "lean unavailable: no `lean` on PATH (install Lean 4 with elan, or set PRMFORGE_LEAN to the command that runs it)"
)


def test_every_verifier_answers_one_step_with_a_timed_verdict(monkeypatch, tmp_path):
    # No Lean toolchain, whatever this machine has: the lean verdict is then known exactly (a real
    # toolchain's verdicts: tests/tasks/verifiers/test_lean.py).
    monkeypatch.delenv("PRMFORGE_LEAN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    context = StepContext("Mia has 21 apples.", ())
    expected = {  # (verdict, evidence, reason)
        "arith": ("valid", "21 - 3 = 18 holds (left 18, right 18)", ""),
        "z3": ("valid", "21 - 3 = 18 holds (left 18, right 18)", ""),  # a closed claim: evaluated exactly
        "lean": ("unknown", NO_LEAN, "lean unavailable"),
        "code": ("unknown", "", "no python snippet in step"),
    }
    for name in VERIFIER_NAMES:
        verdict = get_verifier(name).verify("Step 1: 21 - 3 = 18\nThe answer is 18.", context)
        assert verdict.verifier == name
        assert (verdict.verdict, verdict.evidence, verdict.reason) == expected[name], name
        assert verdict.ms > 0


def test_importing_the_package_loads_no_heavy_module():
    probe = "import sys, tasks.verifiers; print(sorted({'sympy', 'z3', 'latex2sympy2_extended'} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        == "[]\n"
    )


def test_run_guarded_turns_timeouts_and_errors_into_unknown():
    def slow(deadline: Deadline) -> Verdict:
        raise VerifierTimeout("timeout after 5 ms")

    def broken(deadline: Deadline) -> Verdict:
        raise KeyError("x")

    assert run_guarded("t", 5, slow).reason == "timeout after 5 ms"
    assert run_guarded("t", 5, broken).reason == "internal error: KeyError: 'x'"
    verdict = run_guarded("t", 5, lambda deadline: Verdict("ignored", "valid", evidence="e", ms=99.0))
    assert (verdict.verifier, verdict.verdict, verdict.evidence) == ("t", "valid", "e")
    assert verdict.ms < 99.0


def test_a_judge_blocked_past_its_deadline_is_cut_off_and_its_verifier_answers_at_once_meanwhile():
    began = time.monotonic()
    verdict = run_guarded("sleeper", 100, lambda deadline: time.sleep(30))  # never looks at the deadline
    took = time.monotonic() - began
    assert (verdict.verdict, verdict.reason) == ("unknown", "timeout after 100 ms: the check did not stop and was cut off")
    assert 0.1 + ABANDON_AFTER_MS / 1000 <= took < 0.1 + ABANDON_AFTER_MS / 1000 + 1.0
    assert verdict.ms >= 100 + ABANDON_AFTER_MS
    began = time.monotonic()
    again = run_guarded("sleeper", 100, lambda deadline: Verdict("sleeper", "valid"))
    assert time.monotonic() - began < 0.05
    assert (again.verdict, again.reason) == (
        "unknown", "not checked: an earlier check of this verifier hung and is still running")
    assert run_guarded("other", 100, lambda deadline: Verdict("other", "valid")).verdict == "valid"


def test_a_verifier_whose_cut_off_check_ends_works_again():
    release, gives_up = threading.Event(), time.monotonic() + 8  # gives up so that a guard that waits fails

    def spin(deadline: Deadline) -> Verdict:  # a busy loop that ignores its deadline
        while not release.is_set() and time.monotonic() < gives_up:
            pass
        return Verdict("spinner", "valid")

    began = time.monotonic()
    assert run_guarded("spinner", 100, spin).reason == "timeout after 100 ms: the check did not stop and was cut off"
    assert time.monotonic() - began < 0.1 + ABANDON_AFTER_MS / 1000 + 1.0
    release.set()
    deadline = time.monotonic() + 10
    while (verdict := run_guarded("spinner", 100, lambda deadline: Verdict("spinner", "valid"))).verdict != "valid":
        assert verdict.reason == "not checked: an earlier check of this verifier hung and is still running"
        assert time.monotonic() < deadline, "the released check never ended"
        time.sleep(0.05)
