"""What each statement of a step may rely on: the premises in force, case by case.

`plan_step(context, step_text)` reads the problem, the earlier steps and the step itself
(`roles.read_step`) and returns every statement of the step with its role turned into what a
verifier does with it (`mode`), the facts it may use, and the facts it adds.

Premises come from
- the problem: its definitions and assumptions (`Let x = 12`, `Solve 2x + 3 = 11`, `with
  a + b = 10`), plain values (`a_1 = 7`) and function definitions; not its questions or
  conditions (`For which n is 2^n ≤ n^2?`, `Find all n such that 3^n < 10n`: candidates for n
  are not facts about n), nor a relation it only describes (`the roots of x^2 - 9x + 14 = 0`,
  `the line y = 2x + 1 meets y = x^2`: x there is any point, not one value);
- each earlier step: what it asserted or defined before its first case (scope 0), except that
  a step opening a sibling case (`Case 2:`) does not see the steps of the case before it;
- this step: what came before the statement in its own case, and scope 0.

Names take new values. Every binding (`x = 5` asserted of a free name, assumed, or defined)
gives the name a new version (`x'1`), so a value bound in one case is never contradicted by one
bound in another, and `S = 96` then `S = 96 - 20` are two names. An assertion `x = 13` of a name
an earlier step bound to 12 is a rebinding: compared, never invalid. Only a name the problem
binds keeps its value: asserting `x = 13` when the problem says `x = 12` is checked. An
assumption about a name that is constrained but has no value of its own (`If u = 1`, after
`u = x^2`) keeps the link (`u'2 = u'1`), so `x^2 = 1` follows inside that case.

Functions: `f(x) = 2x^2 - 3x + 1` (the arguments distinct names) defines f; `f(3)` is then its
body at 3. `f(3)` of an undefined f is a name.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tasks.verifiers.base import StepContext
from tasks.verifiers.claims import ASSIGNMENT, EQUALITY, Claim
from tasks.verifiers.reading import first_case_label, opening_case
from tasks.verifiers.roles import (
    ASSERTION,
    ASSUMPTION,
    CONDITION,
    DEFINITION,
    QUESTION,
    REJECTED,
    Reading,
    Statement,
    Unread,
    read_step,
)

# What a verifier does with a statement.
CHECK = "check"  # judge it against the premises
BIND = "bind"  # a free name gets a value: nothing to judge
REBIND = "rebind"  # a bound name gets a new value: compared with the old one, never invalid
ALTERNATIVES = "alternatives"  # one of several values offered: judged as a disjunction at most
REJECT = "reject"  # stated to be refuted: right when false
PREMISE = "premise"  # an assumption or definition: a premise, not judged
NOTE = "note"  # a condition or question: neither judged nor a premise

_VERSION = re.compile(r"'\d+")


def display(text: str) -> str:
    """A claim's text without version marks: `x'2 + 1` -> `x + 1`.

    >>> display("x'2 + y'10 = 3")
    'x + y = 3'
    """
    return _VERSION.sub("", text)


@dataclass(frozen=True)
class Fact:
    claim: Claim  # in the versions in force
    binding: bool  # `name = expression`, the name in a version of its own
    given: bool = False  # stated by the problem


@dataclass(frozen=True)
class Planned:
    """One statement of the step, ready for a verifier."""

    statement: Statement
    claim: Claim  # names in their versions
    mode: str  # CHECK, BIND, REBIND, ALTERNATIVES, REJECT, PREMISE or NOTE
    fresh_scope: bool  # the first statement of a case: start again from the step's scope 0
    adds: tuple[Fact, ...] = ()  # facts in force after it
    previous: Fact | None = None  # REBIND: the binding it replaces


@dataclass(frozen=True)
class Plan:
    base: tuple[Fact, ...]  # facts in force before the step: the problem and earlier steps
    items: tuple[Planned, ...]
    unread: tuple[Unread, ...]


class _Knowledge:
    """Facts, name versions and function definitions in force at one point of a solution."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.facts: list[Fact] = []
        self.bound: dict[Any, Fact] = {}  # versioned symbol -> its binding fact
        self.mentioned: set[Any] = set()  # versioned symbols some fact mentions
        self.functions: dict[str, tuple[tuple[Any, ...], Any]] = {}
        self.piecewise: frozenset[str] = frozenset()  # functions defined piece by piece: never expanded

    def copy(self) -> "_Knowledge":
        other = _Knowledge()
        other.versions = dict(self.versions)
        other.facts = list(self.facts)
        other.bound = dict(self.bound)
        other.mentioned = set(self.mentioned)
        other.functions = dict(self.functions)
        other.piecewise = self.piecewise
        return other

    def symbol(self, name: str) -> Any:
        import sympy

        version = self.versions.get(name, 0)
        return sympy.Symbol(name if version == 0 else f"{name}'{version}")

    def fresh(self, name: str) -> Any:
        self.versions[name] = self.versions.get(name, 0) + 1
        return self.symbol(name)

    def expand(self, expression: Any) -> Any:
        """Defined functions replaced by their bodies; `h(2)` of an undefined h becomes a name."""
        import sympy
        from sympy.core.function import AppliedUndef

        applications = expression.atoms(AppliedUndef)
        if not applications:
            return expression
        replacements = {}
        for application in applications:
            name, arguments = str(application.func), application.args
            definition = self.functions.get(name)
            if definition is not None and len(definition[0]) == len(arguments):
                replacements[application] = definition[1].xreplace(dict(zip(definition[0], arguments, strict=True)))
            elif all(argument.is_number for argument in arguments):
                replacements[application] = sympy.Symbol(str(application))
        return expression.xreplace(replacements)

    def expanded(self, claim: Claim) -> Claim:
        if not _has_applications(claim.relation):
            return claim
        left, right = self.expand(claim.lhs), self.expand(claim.rhs)
        kind = ASSIGNMENT if claim.operator == "=" and left.is_Symbol else claim.kind
        return replace(claim, relation=claim.relation.func(left, right, evaluate=False), kind=kind)

    def rename(self, expression: Any) -> Any:
        """The expression in the versions in force, with defined functions expanded."""
        expression = self.expand(expression)
        renames = {symbol: self.symbol(str(symbol)) for symbol in expression.free_symbols if self.versions.get(str(symbol))}
        return expression.xreplace(renames) if renames else expression

    def renamed(self, claim: Claim) -> Claim:
        if not claim.free_symbols and not _has_applications(claim.relation):
            return claim
        # Each side on its own: a rebuilt Eq(a, a) would evaluate to True.
        relation = claim.relation.func(self.rename(claim.lhs), self.rename(claim.rhs), evaluate=False)
        return replace(claim, relation=relation)

    def add(self, claim: Claim, binding: bool, given: bool = False) -> Fact:
        fact = Fact(claim, binding, given)
        self.facts.append(fact)
        if binding:
            self.bound[claim.lhs] = fact
        self.mentioned |= claim.free_symbols
        return fact


def _has_applications(expression: Any) -> bool:
    from sympy.core.function import AppliedUndef

    return bool(expression.atoms(AppliedUndef))


def _function_definition(claim: Claim) -> tuple[str, tuple[Any, ...], Any] | None:
    """`f(x) = body` with distinct names as arguments: (f, (x,), body)."""
    from sympy.core.function import AppliedUndef

    if claim.operator != "=" or not isinstance(claim.lhs, AppliedUndef):
        return None
    arguments = claim.lhs.args
    if not all(argument.is_Symbol for argument in arguments) or len(set(arguments)) != len(arguments):
        return None
    return str(claim.lhs.func), tuple(arguments), claim.rhs


def _defines(knowledge: _Knowledge, definition: tuple[str, tuple[Any, ...], Any], role: str) -> bool:
    """Whether `f(x) = body` defines f, or is an equation about x (`Solve g(x) = 7`, `f(x) = 0`).

    Only a definition (`Let f(x) = ...`) gives a defined function a new body; otherwise a body
    must use its arguments: `g(x) = 7` of a defined g, or one that names no argument, is an
    equation, and its function is expanded as in any other relation.
    """
    name, arguments, body = definition
    if role == DEFINITION:
        return True
    if name in knowledge.functions:
        return False
    return bool(body.free_symbols & set(arguments))


def _piecewise(statements: Sequence[Statement]) -> frozenset[str]:
    """Functions one text defines piece by piece: twice (`f(x) = 2x + 1` if x < 0 and
    `f(x) = x^2` if x >= 0), or once with a range of its arguments after it (`g(x) = x^2 for
    x >= 0`). No piece alone gives the function's value at a point. An equation posed about a
    function (`Solve g(x) = 7`, `For which x is f(x) = x^2?`) is no piece."""
    pieces: dict[str, int] = {}
    ranged: set[str] = set()
    for index, statement in enumerate(statements):
        definition = _function_definition(statement.claim)
        if definition is None or statement.role in (QUESTION, REJECTED) or statement.cue in ("solve", "solving"):
            continue
        name, arguments, body = definition
        pieces[name] = pieces.get(name, 0) + bool(body.free_symbols & set(arguments))
        if index + 1 < len(statements) and _is_range(statements[index + 1].claim, arguments):
            ranged.add(name)
    return frozenset(name for name, count in pieces.items() if count > 1) | frozenset(ranged)


def _is_range(claim: Claim, arguments: Sequence[Any]) -> bool:
    """Whether a relation only bounds the given arguments (`x >= 0` after `f(x) = x^2`)."""
    return claim.operator not in ("=", "≈", "≡") and bool(claim.free_symbols) and claim.free_symbols <= set(arguments)


def _is_name_binding(claim: Claim) -> bool:
    return claim.kind == ASSIGNMENT and claim.operator == "="


def _walk(knowledge: _Knowledge, reading: Reading, given: bool = False) -> tuple[list[Planned], _Knowledge]:
    """Plans every statement of one text; returns them and the knowledge after its scope 0.

    `knowledge` is not changed. For the problem (`given`), scopes are ignored: every case of
    the problem statement is a premise.
    """
    top = knowledge.copy()
    top.piecewise |= _piecewise(reading.statements)
    current, scope = top, 0
    planned: list[Planned] = []
    introduced = list(reading.introduced)
    for index, statement in enumerate(reading.statements):
        fresh_scope = False
        if statement.scope != scope and not given:
            current, scope, fresh_scope = top.copy(), statement.scope, True
        while introduced and introduced[0][0] <= index:
            _, where, name = introduced.pop(0)
            (top if where == 0 else current).fresh(name)  # a name introduced anew: a new version
        piece = planned[-1].claim if planned and planned[-1].mode == NOTE else None
        definition = _function_definition(piece) if piece is not None else None
        if definition is not None and definition[0] in current.piecewise and _is_range(statement.claim, definition[1]):
            planned.append(Planned(statement, statement.claim, NOTE, fresh_scope))  # the range of a piece
            continue
        planned.append(_plan(current, statement, given, fresh_scope))
    for _, where, name in introduced:
        (top if where == 0 else current).fresh(name)
    return planned, top


def _plan(knowledge: _Knowledge, statement: Statement, given: bool, fresh_scope: bool) -> Planned:
    claim, role = statement.claim, statement.role
    if role in (CONDITION, QUESTION):
        return Planned(statement, knowledge.renamed(claim), NOTE, fresh_scope)
    if role == REJECTED:
        return Planned(statement, knowledge.renamed(claim), REJECT, fresh_scope)
    if statement.alternative:
        return Planned(statement, knowledge.renamed(claim), ALTERNATIVES, fresh_scope)
    definition = _function_definition(claim)
    if definition is not None and definition[0] in knowledge.piecewise:
        return Planned(statement, claim, NOTE, fresh_scope)  # one piece of a function: no value alone
    if definition is not None and _defines(knowledge, definition, role):
        name, arguments, body = definition
        knowledge.functions[name] = (arguments, body)
        return Planned(statement, claim, PREMISE, fresh_scope)
    claim = knowledge.expanded(claim)
    statement = replace(statement, claim=claim)
    if role == ASSERTION:
        return _plan_assertion(knowledge, statement, given, fresh_scope)
    # An assumption or a definition: a premise in its scope.
    if _is_name_binding(claim):
        name = str(claim.lhs)
        old = knowledge.symbol(name)
        rhs = knowledge.rename(claim.rhs)
        previous = knowledge.bound.get(old)
        held = previous is not None and not previous.claim.rhs.free_symbols  # old had a value of its own
        linked = role == ASSUMPTION and old in knowledge.mentioned and not held
        new = knowledge.fresh(name)
        renamed = replace(claim, relation=claim.relation.func(new, rhs, evaluate=False))
        adds = [knowledge.add(renamed, binding=True, given=given)]
        if linked:
            import sympy

            link = Claim(sympy.Eq(new, old, evaluate=False), f"{name} = {name}", name, name, "=", EQUALITY)
            adds.append(knowledge.add(link, binding=False, given=given))
        return Planned(statement, renamed, PREMISE, fresh_scope, tuple(adds))
    for symbol in claim.free_symbols:
        if knowledge.symbol(str(symbol)) in knowledge.bound and role == ASSUMPTION and not given:
            knowledge.fresh(str(symbol))
    renamed = knowledge.renamed(claim)
    return Planned(statement, renamed, PREMISE, fresh_scope, (knowledge.add(renamed, binding=False, given=given),))


def _plan_assertion(knowledge: _Knowledge, statement: Statement, given: bool, fresh_scope: bool) -> Planned:
    claim = statement.claim
    if claim.units:  # a computation with units is never a premise about names
        return Planned(statement, knowledge.renamed(claim), CHECK, fresh_scope)
    if not _is_name_binding(claim):
        renamed = knowledge.renamed(claim)
        return Planned(statement, renamed, CHECK, fresh_scope, (knowledge.add(renamed, binding=False, given=given),))
    name = str(claim.lhs)
    old = knowledge.symbol(name)
    rhs = knowledge.rename(claim.rhs)
    previous = knowledge.bound.get(old)
    if old in knowledge.mentioned and (previous is None or previous.given):
        # A name the premises constrain, or one the problem binds: the claim is checked.
        renamed = replace(claim, relation=claim.relation.func(old, rhs, evaluate=False))
        return Planned(statement, renamed, CHECK, fresh_scope, (knowledge.add(renamed, binding=False, given=given),))
    new = knowledge.fresh(name)
    renamed = replace(claim, relation=claim.relation.func(new, rhs, evaluate=False))
    fact = knowledge.add(renamed, binding=True, given=given)
    return Planned(statement, renamed, BIND if previous is None else REBIND, fresh_scope, (fact,), previous)


def _given(statement: Statement) -> bool:
    """Whether a relation of the problem statement is a premise (see the module docstring)."""
    if statement.alternative:
        return False
    if statement.role in (ASSUMPTION, DEFINITION):
        return True
    claim = statement.claim
    if statement.role != ASSERTION:
        return False
    return _function_definition(claim) is not None or (_is_name_binding(claim) and not claim.rhs.free_symbols)


@functools.lru_cache(maxsize=512)
def _after_problem(problem: str) -> _Knowledge:
    knowledge = _Knowledge()
    reading = read_step(problem)
    knowledge.piecewise = _piecewise(reading.statements)  # before the pieces the filter drops
    statements = tuple(s for s in reading.statements if _given(s))
    _, top = _walk(knowledge, Reading(statements, ()), given=True)
    return top


@functools.lru_cache(maxsize=2048)
def _after_steps(problem: str, steps: tuple[str, ...]) -> _Knowledge:
    if not steps:
        return _after_problem(problem)
    _, top = _walk(_before_step(problem, steps[:-1], steps[-1]), read_step(steps[-1]))
    return top


def _before_step(problem: str, previous: tuple[str, ...], step: str) -> _Knowledge:
    """The knowledge a step starts from.

    A step that opens a case (`**Case 2:** ...`) starts from what held before the case it follows
    (the steps since `Case 1:` belong to that case), unless it starts a new run (`Case 1`).
    """
    label = opening_case(step)
    if label is not None and not first_case_label(label):
        for index in range(len(previous) - 1, -1, -1):
            if opening_case(previous[index]) is not None:
                return _before_step(problem, previous[:index], previous[index])
    return _after_steps(problem, previous)


def plan_step(context: StepContext, step_text: str) -> Plan:
    """Every statement of the step with what it may rely on (see the module docstring)."""
    knowledge = _before_step(context.problem, tuple(context.previous_steps), step_text)
    reading = read_step(step_text)
    items, _ = _walk(knowledge, reading)
    return Plan(tuple(knowledge.facts), tuple(items), reading.unread)


def facts_before(context: StepContext) -> tuple[Fact, ...]:
    """The facts in force before the step: the problem's and the earlier steps' scope 0."""
    return tuple(_after_steps(context.problem, tuple(context.previous_steps)).facts)


def plan_texts(problem: str, steps: Sequence[str]) -> list[Plan]:
    """The plan of every step of a solution, in order."""
    return [plan_step(StepContext(problem, tuple(steps[:index])), step) for index, step in enumerate(steps)]
