"""Exact rational arithmetic: each claimed equality and inequality, evaluated with no floats.

The evaluator walks the sympy tree itself instead of calling `simplify`, so its cost is bounded
by construction: powers, factorials and roots are size-checked before they are computed, and
the deadline is checked at every node. Anything outside the rationals (pi, an irrational root,
a free symbol nothing binds) makes the claim `unknown`, never `invalid`.

Assignments: `x = 3*4` binds x to 12 when x is not bound yet (from the problem, an earlier
step or earlier in this step) and is not itself checked; an assignment to a bound symbol is
checked as an equality.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.records import Verdict
from tasks.verifiers.base import INVALID, UNKNOWN, VALID, Deadline, StepContext, run_guarded
from tasks.verifiers.claims import ASSIGNMENT, Claim, extract_claims, premises_of

# Bounds that keep one evaluation to milliseconds.
MAX_EXPONENT = 10_000
MAX_RESULT_BITS = 100_000
MAX_FACTORIAL = 2_000
MAX_ROOT_DEGREE = 64


class NotEvaluable(Exception):
    """The expression has no exact rational value we can compute; the message says why."""


@dataclass(frozen=True)
class ArithConfig:
    timeout_ms: float = field(default=2000.0, metadata={"help": "hard wall-time limit per step"})


def _bits(value: Any) -> int:
    return max(int(value.p).bit_length(), int(value.q).bit_length())


def _power(base: Any, exponent: Any) -> Any:
    import sympy

    if exponent.q == 1:
        if base == 0 and exponent < 0:
            raise NotEvaluable("division by zero")
        if abs(exponent) > MAX_EXPONENT or _bits(base) * abs(int(exponent)) > MAX_RESULT_BITS:
            raise NotEvaluable(f"value too large to evaluate ({base}^{exponent})")
        return base**exponent
    degree = int(exponent.q)
    if degree > MAX_ROOT_DEGREE:
        raise NotEvaluable(f"root of degree {degree} is too large")
    if base < 0 and degree % 2 == 0:
        raise NotEvaluable(f"even root of a negative number ({base})")
    roots = []
    for part in (abs(int(base.p)), int(base.q)):
        root, exact = sympy.integer_nthroot(part, degree)
        if not exact:
            raise NotEvaluable(f"irrational value ({base}^({exponent}))")
        roots.append(root)
    root = sympy.Rational(roots[0], roots[1]) * (-1 if base < 0 else 1)
    return _power(root, sympy.Integer(exponent.p))


def evaluate_exact(
    expression: Any, bindings: dict[Any, Any] | None = None, deadline: Deadline | None = None
) -> Any:
    """The exact sympy Rational value of `expression`, or NotEvaluable with the reason.

    >>> from sympy import Add, Integer, Mul, Pow
    >>> evaluate_exact(Mul(Integer(1), Pow(Integer(2), -1, evaluate=False), evaluate=False))
    1/2
    """
    import sympy
    from sympy.functions.combinatorial.factorials import factorial
    from sympy.functions.elementary.integers import ceiling, floor

    bindings = bindings or {}

    def value(node: Any) -> Any:
        if deadline is not None:
            deadline.check()
        if isinstance(node, sympy.Rational):
            return node
        if isinstance(node, sympy.Float):
            return sympy.Rational(str(node))
        if isinstance(node, sympy.Symbol):
            if node in bindings:
                return bindings[node]
            raise NotEvaluable(f"free symbol {node}")
        if isinstance(node, sympy.UnevaluatedExpr):
            return value(node.args[0])
        if isinstance(node, sympy.Add):
            total = sympy.Integer(0)
            for argument in node.args:
                total += value(argument)
            return total
        if isinstance(node, sympy.Mul):
            product = sympy.Integer(1)
            for argument in node.args:
                product *= value(argument)
            return product
        if isinstance(node, sympy.Pow):
            return _power(value(node.args[0]), value(node.args[1]))
        if isinstance(node, sympy.Abs):
            return abs(value(node.args[0]))
        if isinstance(node, (floor, ceiling)):
            inner = value(node.args[0])
            return sympy.Integer(sympy.floor(inner) if isinstance(node, floor) else sympy.ceiling(inner))
        if isinstance(node, factorial):
            inner = value(node.args[0])
            if inner.q != 1 or inner < 0 or inner > MAX_FACTORIAL:
                raise NotEvaluable(f"factorial of {inner} is not evaluated")
            return sympy.Integer(sympy.factorial(int(inner)))
        if isinstance(node, sympy.Mod):
            dividend, divisor = value(node.args[0]), value(node.args[1])
            if divisor == 0:
                raise NotEvaluable("division by zero")
            return dividend % divisor
        if isinstance(node, (sympy.Min, sympy.Max)):
            values = [value(argument) for argument in node.args]
            return min(values) if isinstance(node, sympy.Min) else max(values)
        raise NotEvaluable(f"{node} has no exact rational value")

    return value(expression)


def holds(operator: str, left: Any, right: Any) -> bool:
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[operator]


def bind_assignments(
    claims: Iterable[Claim], bindings: dict[Any, Any], deadline: Deadline | None = None
) -> None:
    """Adds to `bindings` every assignment whose symbol is still free and whose value is exact."""
    for claim in claims:
        if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
            try:
                bindings[claim.lhs] = evaluate_exact(claim.rhs, bindings, deadline)
            except NotEvaluable:
                continue


def context_bindings(context: StepContext, deadline: Deadline | None = None) -> dict[Any, Any]:
    """Symbol values set by the problem's and earlier steps' assignments."""
    bindings: dict[Any, Any] = {}
    bind_assignments(premises_of(context).relations, bindings, deadline)
    return bindings


@dataclass(frozen=True)
class ClaimCheck:
    claim: Claim
    outcome: str  # VALID, INVALID or UNKNOWN
    detail: str


def check_claims(
    claims: Iterable[Claim], bindings: dict[Any, Any], deadline: Deadline | None = None
) -> list[ClaimCheck]:
    """Each checkable claim's outcome; definitions (assignments to a free symbol) bind instead."""
    checks = []
    for claim in claims:
        if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
            bind_assignments([claim], bindings, deadline)
            continue
        try:
            left = evaluate_exact(claim.lhs, bindings, deadline)
            right = evaluate_exact(claim.rhs, bindings, deadline)
        except NotEvaluable as error:
            checks.append(ClaimCheck(claim, UNKNOWN, f"{claim.text}: {error}"))
            continue
        if holds(claim.operator, left, right):
            checks.append(ClaimCheck(claim, VALID, f"{claim.text} holds (left {left}, right {right})"))
        else:
            checks.append(ClaimCheck(claim, INVALID, f"{claim.text} is false: left {left}, right {right}"))
    return checks


class ArithVerifier:
    """Exact rational evaluation of every relation a step claims."""

    name = "arith"

    def __init__(self, config: ArithConfig | None = None) -> None:
        self.config = config or ArithConfig()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        return run_guarded(
            self.name, self.config.timeout_ms, lambda deadline: self._judge(step_text, context, deadline)
        )

    def _judge(self, step_text: str, context: StepContext, deadline: Deadline) -> Verdict:
        extraction = extract_claims(step_text)
        checks = check_claims(extraction.claims, context_bindings(context, deadline), deadline)
        failed = [check.detail for check in checks if check.outcome == INVALID]
        passed = [check.detail for check in checks if check.outcome == VALID]
        unclear = [check.detail for check in checks if check.outcome == UNKNOWN]
        unclear += [f"cannot parse {item.text!r}: {item.reason}" for item in extraction.unparsed]
        if failed:
            return Verdict(self.name, INVALID, evidence="; ".join(failed))
        if unclear:
            return Verdict(self.name, UNKNOWN, evidence="; ".join(passed), reason="; ".join(unclear))
        if passed:
            return Verdict(self.name, VALID, evidence="; ".join(passed))
        return Verdict(self.name, UNKNOWN, reason="no checkable claims in step")
