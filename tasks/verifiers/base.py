"""The one interface every step verifier implements, and the clock it measures itself with.

A verifier judges one step given the problem and the steps before it. It answers "valid",
"invalid" or "unknown" (could not check), never raises on bad input, always returns its
evidence, and stops at a hard time limit.
"""

from __future__ import annotations

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


def run_guarded(name: str, timeout_ms: float, judge: Callable[[Deadline], Verdict]) -> Verdict:
    """Calls `judge` under a deadline and stamps the verdict with the time it took.

    A timeout or an unexpected error becomes `unknown` with the reason, so one odd step can
    never stop a run; the reason is stored with the verdict and stays queryable.
    """
    deadline = Deadline(timeout_ms)
    try:
        verdict = judge(deadline)
    except VerifierTimeout as timeout:
        verdict = Verdict(verifier=name, verdict=UNKNOWN, reason=str(timeout))
    except Exception as error:  # noqa: BLE001 - recorded as the verdict's reason, not swallowed
        verdict = Verdict(
            verifier=name, verdict=UNKNOWN, reason=f"internal error: {type(error).__name__}: {error}"
        )
    return Verdict(
        verifier=name,
        verdict=verdict.verdict,
        evidence=verdict.evidence,
        reason=verdict.reason,
        ms=round(deadline.elapsed_ms(), 3),
    )
