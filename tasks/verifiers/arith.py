"""Exact rational arithmetic: each asserted relation, evaluated with no floats.

The evaluator walks the sympy tree itself instead of calling `simplify`, so its cost is bounded
by construction: powers, factorials and roots are size-checked before they are computed, and
the deadline is checked at every node. Anything outside the rationals (pi, an irrational root,
a free symbol nothing binds) makes the claim `unknown`, never `invalid`.

Only assertions are judged (`tasks.verifiers.roles`): a case, an assumption, a condition or a
question is never checked, and a rejected relation ("81 < 40 is false") is right when false.
Names take their values from the bindings in force (`tasks.verifiers.knowledge`), case by case.
A relation found false is called invalid only through the gate (`tasks.verifiers.gate`): an
invalid needs more evidence than a valid, and one the gate holds back is unknown with its reason.

How a relation is read:
- `=` is exact. When it fails exactly it is read the ways people write it before it is called
  false: modulo m when the chain names one (`64 = 1 (mod 7)`), as a rounded decimal
  (`1/3 = 0.333`: valid; `2/3 = 0.66`, cut short: unknown), as the whole part of a division
  when the sentence speaks of whole groups or rounding (`7 / 2 = 3` full boxes: unknown; a bare
  `13 / 2 = 7`: invalid).
- `≡` holds when m divides the difference; a congruence with no modulus in its sentence or
  step is unknown.
- `≈` holds within half a unit of the last shown digit (or 0.1%); it is invalid only when off by
  more than 3% and three units; anything between is unknown. pi and roots are evaluated in floats
  for this only, and an `=` with pi or an irrational root on one side is read as `≈` (people
  write `pi r^2 = 3.14 x 25`); an inequality between irrationals is decided in floats when the
  sides are further apart than float error.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.records import Verdict
from tasks.verifiers.base import INVALID, UNKNOWN, VALID, Deadline, StepContext, run_guarded
from tasks.verifiers.claims import ASSIGNMENT, Claim, load_parsers
from tasks.verifiers.gate import Finding, binding_values, invalid_blocked, rebound_names
from tasks.verifiers.roles import UNCUED
from tasks.verifiers.units import unit_value
from tasks.verifiers.knowledge import (
    ALTERNATIVES,
    BIND,
    CHECK,
    NOTE,
    REBIND,
    REJECT,
    Fact,
    Plan,
    display,
    facts_before,
    plan_step,
)

# Bounds that keep one evaluation to milliseconds.
MAX_EXPONENT = 10_000
MAX_RESULT_BITS = 100_000
MAX_FACTORIAL = 2_000
MAX_ROOT_DEGREE = 64
MAX_LOG_RESULT = 4_096

# Approximations (see the module docstring).
APPROX_RELATIVE_OK = 0.001
APPROX_RELATIVE_WRONG = 0.03
APPROX_UNITS_WRONG = 3


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


def _logarithm(value: Any, base: Any) -> Any:
    """log_base(value) when it is an integer (log_2 32 = 5), else NotEvaluable."""
    import sympy

    if value <= 0 or base <= 0 or base == 1:
        raise NotEvaluable(f"logarithm of {value} to base {base} is undefined")
    for sign in (1, -1):
        power, exponent = sympy.Integer(1), 0
        target = value if sign == 1 else 1 / value
        while power < target and exponent < MAX_LOG_RESULT and _bits(power) < MAX_RESULT_BITS:
            power, exponent = power * base if base > 1 else power / base, exponent + 1
        if power == target:
            return sympy.Integer(sign * exponent)
    if value == 1:
        return sympy.Integer(0)
    raise NotEvaluable(f"irrational value (log of {value} to base {base})")


def evaluate_exact(
    expression: Any, bindings: dict[Any, Any] | None = None, deadline: Deadline | None = None
) -> Any:
    """The exact sympy Rational value of `expression`, or NotEvaluable with the reason.

    >>> from sympy import Add, Integer, Mul, Pow
    >>> evaluate_exact(Mul(Integer(1), Pow(Integer(2), -1, evaluate=False), evaluate=False))
    1/2
    """
    import sympy
    from sympy.functions.combinatorial.factorials import binomial, factorial
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
            raise NotEvaluable(f"free symbol {display(str(node))}")
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
        if isinstance(node, binomial):
            top, bottom = value(node.args[0]), value(node.args[1])
            if top.q != 1 or bottom.q != 1 or not 0 <= bottom <= top <= MAX_FACTORIAL:
                raise NotEvaluable(f"binomial({top}, {bottom}) is not evaluated")
            return sympy.Integer(math.comb(int(top), int(bottom)))
        if isinstance(node, sympy.Mod):
            dividend, divisor = value(node.args[0]), value(node.args[1])
            if divisor == 0:
                raise NotEvaluable("division by zero")
            return dividend % divisor
        if isinstance(node, sympy.log) and len(node.args) in (1, 2):
            if len(node.args) == 1:
                raise NotEvaluable(f"{node} has no exact rational value")
            return _logarithm(value(node.args[0]), value(node.args[1]))
        if isinstance(node, (sympy.Min, sympy.Max)):
            values = [value(argument) for argument in node.args]
            return min(values) if isinstance(node, sympy.Min) else max(values)
        raise NotEvaluable(f"{node} has no exact rational value")

    return value(expression)


@functools.lru_cache(maxsize=1)
def _approximable() -> tuple[type, ...]:
    import sympy

    return (sympy.Number, sympy.Symbol, sympy.Add, sympy.Mul, sympy.Pow, sympy.Abs, sympy.exp,
            type(sympy.pi), type(sympy.E), sympy.UnevaluatedExpr)


def evaluate_approximately(expression: Any, bindings: dict[Any, Any] | None = None) -> float:
    """A float value, for approximations only: exact where possible, else pi, e and roots in floats."""
    try:
        return float(evaluate_exact(expression, bindings))
    except NotEvaluable:
        pass
    import sympy

    bindings = bindings or {}
    for node in sympy.preorder_traversal(expression):
        # Only pi, e and roots: a trig function may be in degrees (sin 30°), a bare log in any base.
        if not isinstance(node, _approximable()) and not (isinstance(node, sympy.log) and len(node.args) == 2):
            raise NotEvaluable(f"{node} is not evaluated, even approximately")
    if expression.free_symbols - set(bindings):
        raise NotEvaluable(f"free symbol {display(str(sorted(expression.free_symbols - set(bindings), key=str)[0]))}")
    if any(isinstance(node, sympy.Pow) and node.args[1].is_number and abs(node.args[1]) > MAX_EXPONENT
           for node in sympy.preorder_traversal(expression)):
        raise NotEvaluable("value too large to evaluate")
    try:
        result = complex(expression.xreplace(dict(bindings)).evalf(15))
    except (TypeError, ValueError, OverflowError) as error:
        raise NotEvaluable(f"{expression} has no numeric value") from error
    if result.imag != 0 or not math.isfinite(result.real):
        raise NotEvaluable(f"{expression} has no real value")
    return result.real


def holds(operator: str, left: Any, right: Any) -> bool:
    return {
        "=": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[operator]


_DECIMAL = re.compile(r"^\s*[-+]?\s*\$?\s*(\d[\d,]*)\.(\d+)\s*(%|\\%)?\s*$")
_INTEGER = re.compile(r"^\s*[-+]?\s*\$?\s*\d[\d,]*\s*$")


def _decimal_places(text: str) -> int | None:
    """Places after the point of a decimal literal side (`0.333` -> 3, `12.5%` -> 3), else None."""
    match = _DECIMAL.match(text)
    if match is None:
        return None
    return len(match.group(2)) + (2 if match.group(3) else 0)


@dataclass(frozen=True)
class ClaimCheck:
    claim: Claim
    outcome: str  # VALID, INVALID or UNKNOWN
    detail: str
    sides: tuple[Any, Any] | None = None  # an invalid's two compared values, for the gate (gate.py)


def _equality_readings(claim: Claim, left: Any, right: Any, whole_hint: bool = False) -> ClaimCheck:
    """`=` failed exactly: modulo, rounded, or the whole part of a division, before false."""
    import sympy

    text = display(claim.text)
    modulus = claim.modulus
    if modulus is not None and left.q == 1 and right.q == 1:
        if (left - right) % modulus == 0:
            return ClaimCheck(claim, VALID, f"{text} holds modulo {modulus} (left {left}, right {right})")
        return ClaimCheck(claim, INVALID, f"{text} is false, even modulo {modulus}: left {left}, right {right}", (left, right))
    for literal_text, literal, other in ((claim.right_text, right, left), (claim.left_text, left, right)):
        places = _decimal_places(literal_text)
        if places is None:
            continue
        unit = sympy.Rational(1, 10**places)
        gap = abs(other - literal)
        if gap <= unit / 2:
            return ClaimCheck(claim, VALID, f"{text} holds rounded to {places} decimal places (exact {other})")
        if gap < unit and abs(literal) < abs(other):
            return ClaimCheck(claim, UNKNOWN, f"{text}: {literal} is {other} cut short, not rounded")
    for integer_text, integer, other in ((claim.right_text, right, left), (claim.left_text, left, right)):
        if whole_hint and _INTEGER.match(integer_text) and other.q != 1 and integer in (sympy.floor(other), sympy.ceiling(other)):
            return ClaimCheck(claim, UNKNOWN, f"{text}: {integer} is the whole part of {other} (a count of full groups?)")
    return ClaimCheck(claim, INVALID, f"{text} is false: left {left}, right {right}", (left, right))


def _check_approximation(claim: Claim, bindings: dict[Any, Any]) -> ClaimCheck:
    text = display(claim.text)
    left, right = evaluate_approximately(claim.lhs, bindings), evaluate_approximately(claim.rhs, bindings)
    places = [p for p in (_decimal_places(claim.right_text), _decimal_places(claim.left_text)) if p is not None]
    if not places:
        places = [0] if _INTEGER.match(claim.right_text) or _INTEGER.match(claim.left_text) else []
    unit = 10.0 ** -min(places) if places else 0.0
    gap, scale = abs(left - right), max(abs(left), abs(right), 1e-12)
    if (places and gap <= 0.5 * unit * 1.01 + 1e-12) or gap <= APPROX_RELATIVE_OK * scale:
        return ClaimCheck(claim, VALID, f"{text} holds approximately (left {left:.6g}, right {right:.6g})")
    if gap > APPROX_RELATIVE_WRONG * scale and gap > APPROX_UNITS_WRONG * unit:
        return ClaimCheck(claim, INVALID, f"{text} is false: left {left:.6g}, right {right:.6g}", (left, right))
    return ClaimCheck(claim, UNKNOWN, f"{text}: left {left:.6g} and right {right:.6g} differ, loosely approximate?")


_UNIT_WORDS = re.compile(r"\s+[A-Za-z][A-Za-z/^0-9]*$")


def _check_units(claim: Claim, bindings: dict[Any, Any], deadline: Deadline | None, whole_hint: bool) -> ClaimCheck:
    """A relation with units (tasks.verifiers.units): numbers compared, invalid only in one unit."""
    from dataclasses import replace

    text = display(claim.text)

    def evaluate(expression: Any) -> Any:
        return evaluate_exact(expression, bindings, deadline)

    try:
        left, left_units = unit_value(claim.lhs, evaluate)
        right, right_units = unit_value(claim.rhs, evaluate)
    except (ValueError, NotEvaluable) as error:
        return ClaimCheck(claim, UNKNOWN, f"{text}: {error}")
    numbers = replace(
        claim,
        relation=claim.relation.func(left, right, evaluate=False),
        left_text=_UNIT_WORDS.sub("", claim.left_text),
        right_text=_UNIT_WORDS.sub("", claim.right_text),
        units=frozenset(),
    )
    check = check_relation(numbers, {}, deadline, whole_hint)
    if left_units == right_units:
        return ClaimCheck(claim, check.outcome, check.detail.replace(display(numbers.text), text, 1), check.sides)
    if check.outcome == VALID:
        return ClaimCheck(claim, VALID, f"{text} holds in its numbers (left {left}, right {right}; the units differ)")
    return ClaimCheck(claim, UNKNOWN, f"{text}: left {left} and right {right} are in different units (a conversion?)")


_IRRATIONAL = re.compile(r"irrational|has no exact rational value")
NUMERIC_MARGIN = 1e-9


def _check_irrational(claim: Claim, bindings: dict[Any, Any]) -> ClaimCheck:
    """A closed relation with pi, e or an irrational root, in floats.

    `=` is read as people write it with pi (`pi r^2 = 3.14 x 25 = 78.5`): as an approximation.
    An inequality is decided when the sides are further apart than float error.
    """
    if claim.operator == "=":
        return _check_approximation(claim, bindings)
    text = display(claim.text)
    left, right = evaluate_approximately(claim.lhs, bindings), evaluate_approximately(claim.rhs, bindings)
    if abs(left - right) <= NUMERIC_MARGIN * max(abs(left), abs(right), 1.0):
        return ClaimCheck(claim, UNKNOWN, f"{text}: the sides are too close to compare in floats")
    verdict = VALID if holds(claim.operator, left, right) else INVALID
    detail = f"{text} {'holds' if verdict == VALID else 'is false'}: left {left:.6g}, right {right:.6g}"
    return ClaimCheck(claim, verdict, detail, (left, right))


def check_relation(
    claim: Claim, bindings: dict[Any, Any], deadline: Deadline | None = None, whole_hint: bool = False
) -> ClaimCheck:
    """The outcome of one relation under `bindings` (see the module docstring).

    `whole_hint`: the sentence speaks of whole groups or rounding, so `7 / 2 = 3` may mean 3 full
    boxes (unknown rather than invalid).
    """
    text = display(claim.text)
    if claim.units:
        return _check_units(claim, bindings, deadline, whole_hint)
    try:
        if claim.operator == "≈":
            return _check_approximation(claim, bindings)
        left = evaluate_exact(claim.lhs, bindings, deadline)
        right = evaluate_exact(claim.rhs, bindings, deadline)
    except NotEvaluable as error:
        if _IRRATIONAL.search(str(error)) and claim.operator in ("=", "<", "<=", ">", ">="):
            try:
                return _check_irrational(claim, bindings)
            except NotEvaluable:
                pass
        return ClaimCheck(claim, UNKNOWN, f"{text}: {error}")
    if claim.operator == "≡":
        if claim.modulus is None:
            return ClaimCheck(claim, UNKNOWN, f"{text}: a congruence with no modulus")
        if left.q != 1 or right.q != 1:
            return ClaimCheck(claim, UNKNOWN, f"{text}: a congruence of non-integers")
        if (left - right) % claim.modulus == 0:
            return ClaimCheck(claim, VALID, f"{text} (mod {claim.modulus}) holds (left {left}, right {right})")
        return ClaimCheck(claim, INVALID, f"{text} (mod {claim.modulus}) is false: left {left}, right {right}", (left, right))
    if holds(claim.operator, left, right):
        return ClaimCheck(claim, VALID, f"{text} holds (left {left}, right {right})")
    if claim.operator == "=":
        return _equality_readings(claim, left, right, whole_hint)
    return ClaimCheck(claim, INVALID, f"{text} is false: left {left}, right {right}", (left, right))


def bind_assignments(claims: Iterable[Claim], bindings: dict[Any, Any], deadline: Deadline | None = None) -> None:
    """Adds to `bindings` every assignment whose symbol is still free and whose value is exact."""
    for claim in claims:
        if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
            try:
                bindings[claim.lhs] = evaluate_exact(claim.rhs, bindings, deadline)
            except NotEvaluable:
                continue


def check_claims(claims: Iterable[Claim], bindings: dict[Any, Any], deadline: Deadline | None = None) -> list[ClaimCheck]:
    """Each claim's outcome, read as plain text with no roles; assignments to a free symbol bind."""
    checks = []
    for claim in claims:
        if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
            bind_assignments([claim], bindings, deadline)
            continue
        checks.append(check_relation(claim, bindings, deadline))
    return checks


def bind_facts(facts: Iterable[Fact], bindings: dict[Any, Any], deadline: Deadline | None = None) -> None:
    """Adds the value of every binding fact that has one; later facts may use earlier ones."""
    pending = [fact for fact in facts if fact.binding]
    for _ in range(3):  # `F_1 = F_2 = 1` binds F_1 only once F_2 is known
        remaining = []
        for fact in pending:
            try:
                bindings[fact.claim.lhs] = evaluate_exact(fact.claim.rhs, bindings, deadline)
            except NotEvaluable:
                remaining.append(fact)
        if len(remaining) in (0, len(pending)):
            return
        pending = remaining


def context_bindings(context: StepContext, deadline: Deadline | None = None) -> dict[Any, Any]:
    """Symbol values in force before the step (the problem's and earlier steps' bindings)."""
    bindings: dict[Any, Any] = {}
    bind_facts(facts_before(context), bindings, deadline)
    return bindings


@dataclass
class StepOutcome:
    """What the judging of one step found; `verdict` turns it into the step's verdict."""

    failed: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, check: ClaimCheck) -> None:
        {VALID: self.passed, INVALID: self.failed, UNKNOWN: self.unclear}[check.outcome].append(check.detail)

    def verdict(self, name: str) -> Verdict:
        if self.failed:
            return Verdict(name, INVALID, evidence="; ".join(self.failed))
        if self.unclear:
            return Verdict(name, UNKNOWN, evidence="; ".join(self.passed), reason="; ".join(self.unclear))
        if self.passed:
            return Verdict(name, VALID, evidence="; ".join(self.passed + self.notes))
        reason = "no checkable claims in step"
        return Verdict(name, UNKNOWN, reason=reason + (f" ({'; '.join(self.notes)})" if self.notes else ""))


def note_for(item: Any) -> str:
    statement = item.statement
    cue = f" ({statement.cue})" if statement.cue else ""
    return f"{statement.role}{cue}: {display(item.claim.text)}"


def judge_rejections(checks: dict[int, list[ClaimCheck]], outcome: StepOutcome) -> None:
    """A rejected relation is right when false; one false link of a rejected chain is enough."""
    for group in checks.values():
        text = " and ".join(display(check.claim.text) for check in group)
        if any(check.outcome == INVALID for check in group):
            outcome.passed.append(f"{text}: rejected, and indeed false")
        elif all(check.outcome == VALID for check in group):
            outcome.unclear.append(f"{text}: the step rejects it, but it holds (perhaps it rejects the case)")
        else:
            outcome.unclear.append(f"{text}: rejected; cannot tell whether it is false")


def unread_into(plan: Plan, outcome: StepOutcome) -> None:
    for item in plan.unread:
        if item.role in ("assertion", "rejected"):
            outcome.unclear.append(f"cannot parse {item.text!r}: {item.reason}")
        else:
            outcome.notes.append(f"{item.role}, not read: {item.text}")


def judge_plan(plan: Plan, deadline: Deadline | None = None, bindings_so_far: Callable[[], Any] = dict) -> StepOutcome:
    """Every statement of the plan judged by exact arithmetic (see the module docstring).

    `bindings_so_far` gives each name's values in the solution so far (for the gate).
    """
    outcome = StepOutcome()
    bindings: dict[Any, Any] = {}
    bind_facts(plan.base, bindings, deadline)
    local: dict[Any, Any] = {}  # the problem's values and the step's own: no earlier step's
    bind_facts([fact for fact in plan.base if fact.given], local, deadline)
    top, local_top = bindings, local
    rejected: dict[int, list[ClaimCheck]] = {}
    computing: set[int] = set()
    for item in plan.items:
        note_computing(item, computing)
        if item.fresh_scope:
            top = top if top is not bindings else dict(bindings)
            local_top = local_top if local_top is not local else dict(local)
            bindings, local = dict(top), dict(local_top)
        if item.mode == CHECK:
            claim = item.claim
            if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
                bind_assignments([claim], bindings, deadline)  # a constrained name's value, for arithmetic
                bind_assignments([claim], local, deadline)
            else:
                check = check_relation(claim, bindings, deadline, item.statement.whole_hint)
                if check.outcome == INVALID:
                    from_earlier = check_relation(claim, local, deadline, item.statement.whole_hint).outcome != INVALID
                    if uncued(item, computing) and from_earlier:
                        check = ClaimCheck(claim, UNKNOWN, f"{display(claim.text)}: {ANEW}")
                    else:
                        check = gated(check, item.statement, from_earlier, bindings_so_far)
                outcome.add(check)
        elif item.mode == REBIND:
            _rebind(item, bindings, outcome, deadline)
        elif item.mode == REJECT:
            rejected.setdefault(item.statement.fragment, []).append(check_relation(item.claim, bindings, deadline))
        elif item.mode in (ALTERNATIVES, NOTE):
            outcome.notes.append(note_for(item))
        bind_facts(item.adds, bindings, deadline)
        bind_facts(item.adds, local, deadline)
    judge_rejections(rejected, outcome)
    unread_into(plan, outcome)
    return outcome


def gated(check: ClaimCheck, statement: Any, from_earlier: bool, bindings_so_far: Callable[[], Any]) -> ClaimCheck:
    """An invalid check through the gate (tasks.verifiers.gate): it stands, or becomes unknown
    with the gate's reason after what was found."""
    finding = Finding(check.claim, statement.sentence, check.sides, from_earlier, frozenset())
    reason = invalid_blocked(finding)
    if reason is None and check.claim.free_symbols and from_earlier:
        rebound = rebound_names(bindings_so_far(), check.claim)
        reason = invalid_blocked(Finding(check.claim, statement.sentence, check.sides, from_earlier, rebound))
    if reason is None:
        return check
    return ClaimCheck(check.claim, UNKNOWN, f"{check.detail}, but not called invalid: {reason}")


def solution_bindings(context: StepContext, step_text: str) -> Callable[[], Any]:
    """Each name's values in the problem, the earlier steps and the step (gate.binding_values),
    computed on first use: only an invalid finding with names needs them."""
    from tasks.verifiers.roles import read_step

    @functools.lru_cache(maxsize=1)
    def values() -> Any:
        texts = (context.problem, *context.previous_steps, step_text)
        return binding_values([statement for text in texts for statement in read_step(text).statements], evaluate_exact)

    return values


# A claim false only with what earlier steps said of its names, that no word derives from them:
# "For the second number, 3n = 27" after "n = 6" uses n anew more often than it errs.
ANEW = "false only with what earlier steps said of its names, and no word derives it from them (a name used anew?)"


def note_computing(item: Any, computing: set[int]) -> None:
    """A chain that gives a name its value (`a_5 = a_4^2 - a_4 + 1 = ...`) computes with the
    values in force: its links are derived, whatever the words before it."""
    if item.statement.claim.kind == ASSIGNMENT and item.mode in (BIND, REBIND):
        computing.add(item.statement.fragment)


def uncued(item: Any, computing: set[int]) -> bool:
    """No word derives the claim and it is no link of a computing chain (see ANEW)."""
    return item.statement.cue in UNCUED and item.statement.fragment not in computing


def _rebind(item: Any, bindings: dict[Any, Any], outcome: StepOutcome, deadline: Deadline | None) -> None:
    old = item.previous.claim.lhs if item.previous is not None else None
    try:
        new_value = evaluate_exact(item.claim.rhs, bindings, deadline)
    except NotEvaluable:
        outcome.notes.append(f"{display(item.claim.text)}: a new value for {display(str(old))}")
        return
    if old in bindings and bindings[old] == new_value:
        outcome.passed.append(f"{display(item.claim.text)} holds ({display(str(old))} is {new_value} already)")
    else:
        outcome.notes.append(f"{display(item.claim.text)}: {display(str(item.claim.lhs))} takes a new value, {new_value}")


class ArithVerifier:
    """Exact rational evaluation of every relation a step asserts."""

    name = "arith"

    def __init__(self, config: ArithConfig | None = None) -> None:
        self.config = config or ArithConfig()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        load_parsers(step_text, context.problem, *context.previous_steps)
        return run_guarded(
            self.name, self.config.timeout_ms, lambda deadline: self._judge(step_text, context, deadline)
        )

    def _judge(self, step_text: str, context: StepContext, deadline: Deadline) -> Verdict:
        return judge_plan(plan_step(context, step_text), deadline, solution_bindings(context, step_text)).verdict(self.name)
