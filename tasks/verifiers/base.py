"""The one interface every step verifier implements, and the clock it measures itself with.

A verifier judges one step given the problem and the steps before it. It answers "valid",
"invalid" or "unknown" (could not check), never raises on bad input, always returns its
evidence, and stops at a hard time limit.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from schemas.records import Verdict

VALID = "valid"
INVALID = "invalid"
UNKNOWN = "unknown"
VERDICT_VALUES = (VALID, INVALID, UNKNOWN)


@dataclass(frozen=True)
class StepContext:
    """What a step may rely on: the problem statement and the steps before it, in order."""

    problem: str
    previous_steps: tuple[str, ...] = ()


@runtime_checkable
class Verifier(Protocol):
    """Judges one step. Unknown means "could not check" and is never a soft invalid."""

    name: str

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        """The verdict on `step_text`, with evidence, the reason when unknown, and its time in ms."""
        ...


class VerifierTimeout(Exception):
    """Raised inside a verifier when its deadline passes; it becomes an unknown verdict."""


class Deadline:
    """A wall-clock budget started at construction.

    >>> Deadline(1000).remaining_ms() > 0
    True
    >>> Deadline(0).remaining_ms()
    0.0
    """

    def __init__(self, timeout_ms: float) -> None:
        self.timeout_ms = timeout_ms
        self.started = time.perf_counter()
        self._ends = self.started + timeout_ms / 1000.0

    def remaining_ms(self) -> float:
        return max(0.0, (self._ends - time.perf_counter()) * 1000.0)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def check(self) -> None:
        if time.perf_counter() > self._ends:
            raise VerifierTimeout(f"timeout after {self.timeout_ms:g} ms")


# A judge still running this long after its deadline does not cooperate (it is blocked in a sleep
# or a C call, or loops without checking): it is cut off and left behind.
ABANDON_AFTER_MS = 1000.0

_still_running: dict[str, threading.Thread] = {}  # verifier name -> its abandoned check


def run_guarded(name: str, timeout_ms: float, judge: Callable[[Deadline], Verdict]) -> Verdict:
    """Calls `judge` under a deadline and stamps the verdict with the time it took.

    A timeout or an unexpected error becomes `unknown` with the reason, so one odd step can
    never stop a run; the reason is stored with the verdict and stays queryable.

    The deadline is cooperative, so the judge runs in a daemon thread and is cut off
    ABANDON_AFTER_MS past it if it has not returned. Python cannot kill a thread: an abandoned
    check runs on, and until it ends its verifier answers unknown at once, so a verifier that
    hangs on every step costs one timeout, not one per step, and never runs twice at once.
    One C call that holds the GIL (a huge integer power) cannot be cut off this way; verifiers
    that run arbitrary code (code, lean) run it in a subprocess and kill that.

    >>> verdict = run_guarded("t", 1000, lambda deadline: Verdict("ignored", VALID, evidence="2 = 2"))
    >>> verdict.verifier, verdict.verdict, verdict.evidence
    ('t', 'valid', '2 = 2')
    >>> run_guarded("t", 1000, lambda deadline: 1 // 0).reason
    'internal error: ZeroDivisionError: integer division or modulo by zero'
    """
    running = _still_running.get(name)
    if running is not None and running.is_alive():
        return Verdict(name, UNKNOWN, reason="not checked: an earlier check of this verifier hung and is still running",
                       ms=0.0)
    _still_running.pop(name, None)
    deadline = Deadline(timeout_ms)
    outcome: list[Verdict] = []

    def check() -> None:
        try:
            outcome.append(judge(deadline))
        except VerifierTimeout as timeout:
            outcome.append(Verdict(verifier=name, verdict=UNKNOWN, reason=str(timeout)))
        except Exception as error:  # noqa: BLE001 - recorded as the verdict's reason, not swallowed
            outcome.append(Verdict(
                verifier=name, verdict=UNKNOWN, reason=f"internal error: {type(error).__name__}: {error}"
            ))

    worker = threading.Thread(target=contextvars.copy_context().run, args=(check,), name=f"verify-{name}",
                              daemon=True)
    worker.start()
    worker.join((timeout_ms + ABANDON_AFTER_MS) / 1000.0)
    if worker.is_alive():
        _still_running[name] = worker
        verdict = Verdict(name, UNKNOWN, reason=f"timeout after {timeout_ms:g} ms: the check did not stop and was cut off")
    elif outcome:
        verdict = outcome[0]
    else:
        verdict = Verdict(name, UNKNOWN, reason="internal error: the check ended without a verdict")
    return Verdict(
        verifier=name,
        verdict=verdict.verdict,
        evidence=verdict.evidence,
        reason=verdict.reason,
        ms=round(deadline.elapsed_ms(), 3),
    )
