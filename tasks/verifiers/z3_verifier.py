"""Z3: a claim is valid if the premises entail it, invalid if it contradicts them.

For each asserted claim C of the step (roles: `tasks.verifiers.roles`), with premises P (what
`tasks.verifiers.knowledge` puts in force before it: the problem's givens, the earlier steps'
scope 0, and this step's earlier statements in the same case):
- P ∧ ¬C unsat and P ∧ C sat: C follows from P, valid.
- P ∧ C unsat and P ∧ ¬C sat: C contradicts P, invalid; the evidence is a model of P ∧ ¬C.
  The invalid then passes the gate (`tasks.verifiers.gate`) as arith's do, with the values of
  C's sides when P gives each side one value (checked with the solver), else none.
- both unsat: the premises contradict each other, unknown. Both sat: neither, unknown. A
  solver timeout is unknown too.
- C unsat on its own, with no premise, and no false identity (`i^2 = -1`, unlike
  `n^2 + 15 = (n + 3)(n - 3) + 6`): the solver's number domain refutes it, not the text (which
  may mean complex numbers), unknown.
- C refuted by the premises over the reals but not over the complex numbers: the text may mean
  complex values (`z_1 = 2 + 3i`, Vieta on complex roots), unknown. Equations are weighed
  exactly by a Gröbner basis, anything else by z3 with each name a pair of reals (an order
  relation keeps its sides real); only an invalid finding is weighed.

Only the premises that share a name with C, directly or through other premises, are used, so an
unrelated contradiction elsewhere never decides C. A closed claim (`3 + 4 = 8`) needs no
premise: it is evaluated exactly, as arith does, and a closed relation is never a premise (a
false one would make every later claim "follow"). Cases and assumptions are premises only in
their scope, and a name bound anew is a new name (`x'1`), so two cases never meet. Premises z3
cannot take (an unsupported form, an approximation, a congruence) are left out, which keeps both
verdicts sound: fewer premises can only turn valid or invalid into unknown.

Symbols are Reals by default (`symbol_sort="int"` makes them Ints); every literal is a Real, so
`7/2` is 3.5 and never integer division. Closed subexpressions are evaluated exactly first
(tasks.verifiers.arith), which also turns factorials and roots of perfect powers into numbers.
z3 is imported lazily, and each verify call uses its own z3 Context, so threads do not share one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.records import Verdict
from tasks.verifiers.arith import (
    ANEW,
    ClaimCheck,
    NotEvaluable,
    StepOutcome,
    bind_facts,
    check_relation,
    evaluate_exact,
    gated,
    judge_rejections,
    note_computing,
    note_for,
    solution_bindings,
    uncued,
    unread_into,
)
from tasks.verifiers.base import INVALID, UNKNOWN, VALID, Deadline, StepContext, VerifierTimeout, run_guarded
from tasks.verifiers.claims import Claim, load_parsers
from tasks.verifiers.knowledge import ALTERNATIVES, CHECK, NOTE, REBIND, REJECT, Fact, display, plan_step


MAX_SYMBOLIC_EXPONENT = 16
MIN_CALL_MS = 5  # less time left than this for a solver call: the step's budget is spent


@dataclass(frozen=True)
class Z3Config:
    call_timeout_ms: int = field(default=2000, metadata={"help": "z3 timeout for one solver call"})
    timeout_ms: float = field(
        default=10_000.0, metadata={"help": "hard wall-time limit per step, all calls together"}
    )
    symbol_sort: str = field(default="real", metadata={"help": "sort of free symbols: 'real' or 'int'"})

    def __post_init__(self) -> None:
        if self.symbol_sort not in ("real", "int"):
            raise ValueError(f"symbol_sort must be 'real' or 'int', got {self.symbol_sort!r}")


class Unsupported(Exception):
    """A form we do not translate to z3; the message says which."""


class _Translator:
    def __init__(self, z3: Any, context: Any, symbol_sort: str) -> None:
        self.z3, self.context, self.symbol_sort = z3, context, symbol_sort
        self.symbols: dict[str, Any] = {}

    def number(self, value: Any) -> Any:
        return self.z3.RealVal(f"{value.p}/{value.q}", self.context)

    def expression(self, node: Any) -> Any:
        import sympy

        if not node.free_symbols:
            try:
                return self.number(evaluate_exact(node))
            except NotEvaluable as error:
                raise Unsupported(str(error)) from error
        if isinstance(node, sympy.Symbol):
            name = str(node)
            if name not in self.symbols:
                maker = self.z3.Real if self.symbol_sort == "real" else self.z3.Int
                self.symbols[name] = maker(name, self.context)
            return self.symbols[name]
        if isinstance(node, sympy.UnevaluatedExpr):
            return self.expression(node.args[0])
        if isinstance(node, sympy.Add):
            terms = [self.expression(argument) for argument in node.args]
            return self.z3.Sum(*terms) if len(terms) > 1 else terms[0]
        if isinstance(node, sympy.Mul):
            factors = [self.expression(argument) for argument in node.args]
            return self.z3.Product(*factors) if len(factors) > 1 else factors[0]
        if isinstance(node, sympy.Pow):
            return self.power(node)
        if isinstance(node, sympy.Abs):
            inner = self.expression(node.args[0])
            return self.z3.If(inner >= 0, inner, -inner)
        raise Unsupported(f"{type(node).__name__} ({node}) is not translated to z3")

    def power(self, node: Any) -> Any:
        base, exponent = node.args
        if exponent.free_symbols:
            raise Unsupported(f"symbolic exponent in {node}")
        try:
            exponent_value = evaluate_exact(exponent)
        except NotEvaluable as error:
            raise Unsupported(str(error)) from error
        if exponent_value.q != 1 or abs(exponent_value) > MAX_SYMBOLIC_EXPONENT:
            raise Unsupported(f"exponent {exponent_value} in {node}")
        import sympy

        translated = self.expression(base)
        one = self.number(sympy.Integer(1))  # not type(exponent)(1): -1 and 1 are singletons
        result = one
        for _ in range(abs(int(exponent_value))):
            result = result * translated
        # z3's x/0 is unspecified rather than an error, so a symbolic divisor may make a claim
        # neither provable nor refutable; that only yields unknown.
        return result if exponent_value >= 0 else one / result

    def relation(self, claim: Claim) -> Any:
        if claim.operator in ("≈", "≡") or claim.modulus is not None:
            raise Unsupported(f"{'an approximation' if claim.operator == '≈' else 'a congruence'} is not translated to z3")
        left, right = self.expression(claim.lhs), self.expression(claim.rhs)
        return {
            "=": lambda: left == right,
            "!=": lambda: left != right,
            "<": lambda: left < right,
            "<=": lambda: left <= right,
            ">": lambda: left > right,
            ">=": lambda: left >= right,
        }[claim.operator]()


class _ComplexTranslator:
    """Claims over the complex numbers, each value a pair of reals (real part, imaginary part).

    Used only to weigh a refutation found over the reals (`_Session.complex_refutes`): model text
    often means complex values (`z_1 = 2 + 3i`, Vieta on complex roots), and the solver's reals
    then refute what the text rightly says. An order relation (`<`, `>=`) keeps its sides real,
    as text means it; `|w|` is the real r >= 0 with r^2 = re(w)^2 + im(w)^2. Every name, `i`
    included, is a complex name of its own: nothing assumes `i` is the imaginary unit, so this
    can only find more claims satisfiable, never fewer. A structurally real part is None.
    """

    def __init__(self, z3: Any, context: Any) -> None:
        self.z3, self.context = z3, context
        self.symbols: dict[str, tuple[Any, Any]] = {}
        self.sides: list[Any] = []  # constraints of the fresh names (`|w|`)

    def _real(self, value: Any) -> Any:
        return self.z3.RealVal(f"{value.p}/{value.q}", self.context)

    def _zero(self) -> Any:
        return self.z3.RealVal(0, self.context)

    def _part(self, part: Any) -> Any:
        return self._zero() if part is None else part

    def expression(self, node: Any) -> tuple[Any, Any]:
        import sympy

        if not node.free_symbols:
            try:
                return self._real(evaluate_exact(node)), None
            except NotEvaluable as error:
                raise Unsupported(str(error)) from error
        if isinstance(node, sympy.Symbol):
            name = str(node)
            if name not in self.symbols:
                self.symbols[name] = (self.z3.Real(f"{name}.re", self.context), self.z3.Real(f"{name}.im", self.context))
            return self.symbols[name]
        if isinstance(node, sympy.UnevaluatedExpr):
            return self.expression(node.args[0])
        if isinstance(node, sympy.Add):
            terms = [self.expression(argument) for argument in node.args]
            real = self.z3.Sum(*[term[0] for term in terms]) if len(terms) > 1 else terms[0][0]
            imaginary = [term[1] for term in terms if term[1] is not None]
            return real, (self.z3.Sum(*imaginary) if len(imaginary) > 1 else imaginary[0] if imaginary else None)
        if isinstance(node, sympy.Mul):
            factors = [self.expression(argument) for argument in node.args]
            result = factors[0]
            for factor in factors[1:]:
                result = self._times(result, factor)
            return result
        if isinstance(node, sympy.Pow):
            return self._power(node)
        if isinstance(node, sympy.Abs):
            real, imaginary = self.expression(node.args[0])
            if imaginary is None:
                return self.z3.If(real >= 0, real, -real), None
            modulus = self.z3.FreshReal("abs", self.context)
            self.sides += [modulus >= 0, modulus * modulus == real * real + imaginary * imaginary]
            return modulus, None
        raise Unsupported(f"{type(node).__name__} ({node}) is not translated to z3")

    def _times(self, left: tuple[Any, Any], right: tuple[Any, Any]) -> tuple[Any, Any]:
        (a, b), (c, d) = left, right
        if b is None and d is None:
            return a * c, None
        if b is None:
            return a * c, a * d
        if d is None:
            return a * c, b * c
        return a * c - b * d, a * d + b * c

    def _power(self, node: Any) -> tuple[Any, Any]:
        base, exponent = node.args
        if exponent.free_symbols:
            raise Unsupported(f"symbolic exponent in {node}")
        try:
            exponent_value = evaluate_exact(exponent)
        except NotEvaluable as error:
            raise Unsupported(str(error)) from error
        if exponent_value.q != 1 or abs(exponent_value) > MAX_SYMBOLIC_EXPONENT:
            raise Unsupported(f"exponent {exponent_value} in {node}")
        import sympy

        translated = self.expression(base)
        result: tuple[Any, Any] = (self._real(sympy.Integer(1)), None)
        for _ in range(abs(int(exponent_value))):
            result = self._times(result, translated)
        if exponent_value >= 0:
            return result
        real, imaginary = result
        if imaginary is None:
            return 1 / real, None  # z3's x/0 is unspecified: at worst a claim is satisfiable
        norm = real * real + imaginary * imaginary
        return real / norm, -imaginary / norm

    def relation(self, claim: Claim) -> Any:
        if claim.operator in ("≈", "≡") or claim.modulus is not None:
            raise Unsupported("an approximation or a congruence is not translated to z3")
        self.sides = []
        (a, b), (c, d) = self.expression(claim.lhs), self.expression(claim.rhs)
        b, d = self._part(b), self._part(d)
        z3 = self.z3
        if claim.operator == "=":
            formula = z3.And(a == c, b == d)
        elif claim.operator == "!=":
            formula = z3.Or(a != c, b != d)
        else:
            order = {"<": a < c, "<=": a <= c, ">": a > c, ">=": a >= c}[claim.operator]
            formula = z3.And(b == 0, d == 0, order)
        return z3.And(formula, *self.sides) if self.sides else formula


MAX_IDEAL_POLYNOMIALS, MAX_IDEAL_DEGREE = 24, 8  # beyond these a Gröbner basis may take long: z3 instead


def _no_common_complex_zero(claims: list[Claim]) -> bool | None:
    """Whether equations have no common complex solution (1 in the ideal of their polynomials),
    or None when they are not all polynomial equations with rational coefficients, or too many.

    A fraction counts by its numerator, which only adds solutions (where a denominator is 0).

    >>> from tasks.verifiers.claims import parse_span
    >>> read = lambda text: parse_span(text, latex=False)[0]
    >>> _no_common_complex_zero([read("x**2 = -1"), read("x**4 = 1")])  # x = i
    False
    >>> _no_common_complex_zero([read("x + y = 2"), read("x*y = 5"), read("x**2 + y**2 = 7")])  # it is -6
    True
    >>> _no_common_complex_zero([read("x > 1"), read("x = 0")]) is None
    True
    """
    import sympy

    polynomials = []
    for claim in claims:
        if claim.operator != "=" or claim.modulus is not None or claim.relation.atoms(sympy.Abs):
            return None
        try:
            numerator, _ = sympy.fraction(sympy.together(sympy.expand((claim.lhs - claim.rhs).doit())))
            polynomials.append(numerator)
        except (TypeError, ValueError, ArithmeticError, RecursionError):
            return None
    names = sorted(set().union(*(polynomial.free_symbols for polynomial in polynomials)), key=str)
    if not names or len(polynomials) > MAX_IDEAL_POLYNOMIALS:
        return None
    try:
        polys = [sympy.Poly(polynomial, *names, domain="QQ") for polynomial in polynomials]
    except (sympy.PolynomialError, sympy.CoercionFailed, TypeError, ValueError):
        return None
    if any(poly.total_degree() > MAX_IDEAL_DEGREE for poly in polys):
        return None
    try:
        basis = sympy.groebner([poly.as_expr() for poly in polys], *names, order="grevlex", domain="QQ")
    except (sympy.PolynomialError, sympy.CoercionFailed, TypeError, ValueError, ArithmeticError):
        return None
    return any(element.is_number and element != 0 for element in basis.exprs)


def _false_identity(claim: Claim) -> bool:
    """An equation whose sides differ by a nonzero number, whatever its names' values
    (`n^2 + 15 = (n + 3)(n - 3) + 6`): false in every number domain."""
    import sympy

    if claim.operator != "=":
        return False
    difference = sympy.expand(claim.lhs - claim.rhs)
    return bool(difference.is_number and difference != 0)


def _model_text(model: Any) -> str:
    pairs = sorted((display(declaration.name()), str(model[declaration])) for declaration in model.decls())
    return "[" + ", ".join(f"{name} = {value}" for name, value in pairs) + "]"


def _connected(claim: Claim, facts: list[Fact]) -> list[Fact]:
    """The facts that share a name with the claim, directly or through other such facts."""
    names = set(claim.free_symbols)
    remaining = [fact for fact in facts if fact.claim.free_symbols]
    chosen: list[Fact] = []
    grew = True
    while grew:
        grew = False
        for fact in list(remaining):
            if fact.claim.free_symbols & names:
                names |= fact.claim.free_symbols
                chosen.append(fact)
                remaining.remove(fact)
                grew = True
    return chosen


class Z3Verifier:
    """Entailment and refutation of each asserted claim by the premises in force, with z3."""

    name = "z3"

    def __init__(self, config: Z3Config | None = None) -> None:
        self.config = config or Z3Config()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        load_parsers(step_text, context.problem, *context.previous_steps)
        try:
            import z3  # noqa: F401 - loaded before the deadline, like the parsers
        except ImportError:  # pragma: no cover - the judge reports it as an internal error: unknown
            pass

        return run_guarded(
            self.name, self.config.timeout_ms, lambda deadline: self._judge(step_text, context, deadline)
        )

    def _judge(self, step_text: str, context: StepContext, deadline: Deadline) -> Verdict:
        plan = plan_step(context, step_text)
        earlier = {id(fact) for fact in plan.base if not fact.given}  # what earlier steps said
        session = _Session(self, deadline)
        outcome = StepOutcome()
        facts, top = list(plan.base), None
        rejected: dict[int, list[ClaimCheck]] = {}
        alternatives: list[Any] = []
        computing: set[int] = set()
        bindings_so_far = solution_bindings(context, step_text)
        for item in plan.items:
            note_computing(item, computing)
            if item.fresh_scope:
                top = list(facts) if top is None else top
                facts = list(top)
            if alternatives and (item.mode != ALTERNATIVES or item.fresh_scope):
                session.alternatives(alternatives, facts_at_alternatives, outcome)
                alternatives = []
            if item.mode == CHECK:
                check = session.check(item.claim, facts, item.statement.whole_hint)
                if check.outcome == INVALID:
                    check = session.complex_refutes(check, facts)
                if check.outcome == INVALID:
                    local = [fact for fact in facts if id(fact) not in earlier]
                    from_earlier = bool(item.claim.free_symbols) and session.consistent(item.claim, local)
                    if uncued(item, computing) and from_earlier:
                        check = ClaimCheck(item.claim, UNKNOWN, f"{display(item.claim.text)}: {ANEW}")
                    else:
                        check = gated(session.with_sides(check, facts), item.statement, from_earlier, bindings_so_far)
                outcome.add(check)
            elif item.mode == REBIND:
                _rebind(item, facts, outcome, deadline)
            elif item.mode == REJECT:
                rejected.setdefault(item.statement.fragment, []).append(session.check(item.claim, facts))
            elif item.mode == ALTERNATIVES:
                if not alternatives:
                    facts_at_alternatives = list(facts)
                alternatives.append(item)
            elif item.mode == NOTE:
                outcome.notes.append(note_for(item))
            facts.extend(item.adds)
        if alternatives:
            session.alternatives(alternatives, facts_at_alternatives, outcome)
        judge_rejections(rejected, outcome)
        unread_into(plan, outcome)
        return outcome.verdict(self.name)


def _rebind(item: Any, facts: list[Fact], outcome: StepOutcome, deadline: Deadline) -> None:
    """A bound name given a value again: the same value holds, a new one is noted, never judged."""
    bindings: dict[Any, Any] = {}
    bind_facts(facts, bindings, deadline)
    old = item.previous.claim.lhs if item.previous is not None else None
    try:
        same = old in bindings and evaluate_exact(item.claim.rhs, bindings, deadline) == bindings[old]
    except NotEvaluable:
        same = False
    if same:
        outcome.passed.append(f"{display(item.claim.text)} holds ({display(str(old))} has that value already)")
    else:
        outcome.notes.append(f"{display(item.claim.text)}: {display(str(item.claim.lhs))} takes a new value")


class _Session:
    """One step's z3 context, translator and premise translations."""

    def __init__(self, verifier: Z3Verifier, deadline: Deadline) -> None:
        self.verifier, self.deadline = verifier, deadline
        self._z3: Any = None
        self._formulas: dict[int, Any] = {}

    def _start(self) -> Any:
        if self._z3 is None:
            import z3

            self._z3 = z3
            self.context = z3.Context()
            self.translator = _Translator(z3, self.context, self.verifier.config.symbol_sort)
        return self._z3

    def _premises(self, claim: Claim, facts: list[Fact]) -> list[Any]:
        return [self._formulas[id(fact)] for fact in self._premise_facts(claim, facts)]

    def _premise_facts(self, claim: Claim, facts: list[Fact]) -> list[Fact]:
        """The facts that share a name with the claim and that z3 takes: the premises."""
        chosen = []
        for fact in _connected(claim, facts):
            key = id(fact)
            if key not in self._formulas:
                try:
                    self._formulas[key] = self.translator.relation(fact.claim)
                except Unsupported:
                    self._formulas[key] = None
            if self._formulas[key] is not None:
                chosen.append(fact)
        return chosen

    def _solve(self, formulas: list[Any]) -> tuple[str, Any]:
        """('sat', model), ('unsat', None) or ('unknown', reason), within the remaining budget."""
        z3 = self._z3
        budget = int(min(self.verifier.config.call_timeout_ms, self.deadline.remaining_ms()))
        if budget < MIN_CALL_MS:
            raise VerifierTimeout(f"timeout after {self.verifier.config.timeout_ms:g} ms")
        solver = z3.Solver(ctx=self.context)
        solver.set("timeout", budget)
        solver.add(*formulas)
        result = solver.check()
        if result == z3.sat:
            return "sat", solver.model()
        if result == z3.unsat:
            return "unsat", None
        reason = solver.reason_unknown()
        if reason in ("timeout", "canceled"):
            return "unknown", f"z3 timeout after {budget} ms"
        return "unknown", f"z3 returned unknown: {reason}"

    def check(self, claim: Claim, facts: list[Fact], whole_hint: bool = False) -> ClaimCheck:
        text = display(claim.text)
        if not claim.free_symbols or claim.units:
            return check_relation(claim, {}, self.deadline, whole_hint)
        z3 = self._start()
        try:
            formula = self.translator.relation(claim)
        except Unsupported as error:
            return ClaimCheck(claim, UNKNOWN, f"{text}: unsupported form: {error}")
        premises = self._premises(claim, facts)
        entailed, counter = self._solve([*premises, z3.Not(formula)])
        if entailed == "unknown":
            return ClaimCheck(claim, UNKNOWN, f"{text}: {counter}")
        refuted, detail = self._solve([*premises, formula])
        if refuted == "unknown":
            return ClaimCheck(claim, UNKNOWN, f"{text}: {detail}")
        if entailed == "unsat" and refuted == "unsat":
            return ClaimCheck(claim, UNKNOWN, f"{text}: premises are inconsistent: earlier relations contradict each other")
        if entailed == "unsat":
            return ClaimCheck(claim, VALID, f"{text} follows from the premises")
        if refuted == "unsat" and self._solve([formula])[0] != "sat" and not _false_identity(claim):
            # No real value of its names satisfies it, yet it is no false identity: the solver's
            # number domain refutes it, not the premises (`i^2 = -1` of the imaginary unit).
            return ClaimCheck(claim, UNKNOWN, f"{text} has no solution among the {self.verifier.config.symbol_sort}s "
                                              "on its own: another number domain (complex numbers?)")
        if refuted == "unsat":
            return ClaimCheck(
                claim, INVALID, f"{text} contradicts the premises; model of premises and not claim: {_model_text(counter)}"
            )
        return ClaimCheck(
            claim, UNKNOWN, f"{text} neither follows from nor contradicts the premises (counterexample {_model_text(counter)})"
        )

    def with_sides(self, check: ClaimCheck, facts: list[Fact]) -> ClaimCheck:
        """A symbolic invalid check with the exact values of its sides when the premises give each
        side one value (the gate needs them: tasks.verifiers.gate), else as it is."""
        from dataclasses import replace

        import sympy

        claim = check.claim
        if check.sides is not None or not claim.free_symbols:
            return check
        if _false_identity(claim):  # its sides differ by a number, whatever the names' values
            return replace(check, sides=(sympy.expand(claim.lhs - claim.rhs), sympy.Integer(0)))
        z3 = self._start()
        premises = self._premises(claim, facts)
        status, model = self._solve(premises)
        if status != "sat":
            return check
        sides = []
        for side in (claim.lhs, claim.rhs):
            try:
                term = self.translator.expression(side)
            except Unsupported:
                return check
            value = model.eval(term, model_completion=True)
            if z3.is_int_value(value):
                exact = sympy.Integer(value.as_long())
            elif z3.is_rational_value(value):
                exact = sympy.Rational(value.numerator_as_long(), value.denominator_as_long())
            else:
                return check
            if self._solve([*premises, term != value])[0] != "unsat":
                return check  # the premises leave the side more than one value
            sides.append(exact)
        return replace(check, sides=(sides[0], sides[1]))

    def complex_refutes(self, check: ClaimCheck, facts: list[Fact]) -> ClaimCheck:
        """An invalid check of a claim with names, as it is when its premises refute it over the
        complex numbers too; else unknown. The solver's names are reals, and model text often
        means complex values (`z_1 = 2 + 3i`, then `z_1 z_2 = 4 + 9 = 13`; Vieta on complex
        roots): a refutation that only the reals give is no error of the text. Integer names
        (`symbol_sort="int"`) are the configuration's choice and are left as they are.

        Equations only: the claim and its premises have no common complex zero exactly when 1
        is in the ideal of their polynomials (Hilbert's Nullstellensatz; a Gröbner basis, exact
        and fast on the few premises a claim has). Otherwise (an order relation, `|w|`, `≠`) z3
        weighs them with each name a pair of reals (`_ComplexTranslator`)."""
        claim = check.claim
        if not claim.free_symbols or claim.units or self.verifier.config.symbol_sort != "real":
            return check
        self._start()
        premises = [fact.claim for fact in self._premise_facts(claim, facts)]
        refuted = _no_common_complex_zero([*premises, claim])
        if refuted is None:
            status, detail = self._complex_solve(premises, claim)
            refuted = True if status == "unsat" else False if status == "sat" else None
        if refuted:
            return check
        why = ("it holds with complex values of its names (z3 reads names as reals; the text may mean complex numbers)"
               if refuted is False else f"not weighed over the complex numbers ({detail})")
        return ClaimCheck(claim, UNKNOWN, f"{check.detail}, but not called invalid: {why}")

    def _complex_solve(self, premises: list[Claim], claim: Claim) -> tuple[str, Any]:
        translator = _ComplexTranslator(self._z3, self.context)
        try:
            formulas = [translator.relation(relation) for relation in (*premises, claim)]
        except Unsupported as error:
            return "unknown", str(error)
        return self._solve(formulas)

    def consistent(self, claim: Claim, facts: list[Fact]) -> bool:
        """Whether the claim and the facts (those that share a name with it) can hold together."""
        return self._solve([*self._premises(claim, facts), self.translator.relation(claim)])[0] == "sat"

    def alternatives(self, items: list[Any], facts: list[Fact], outcome: StepOutcome) -> None:
        """Values offered for a name: valid when the premises entail one of them, else only noted."""
        text = " or ".join(display(item.claim.text) for item in items)
        claims = [item.claim for item in items]
        if not any(claim.free_symbols for claim in claims):
            if any(check_relation(claim, {}, self.deadline).outcome == VALID for claim in claims):
                outcome.passed.append(f"{text}: one of them holds")
            else:
                outcome.notes.append(f"alternatives: {text}")
            return
        z3 = self._start()
        try:
            formulas = [self.translator.relation(claim) for claim in claims]
        except Unsupported:
            outcome.notes.append(f"alternatives: {text}")
            return
        premises = []
        for claim in claims:
            premises += [p for p in self._premises(claim, facts) if not any(p.eq(q) for q in premises)]
        entailed, _ = self._solve([*premises, z3.Not(z3.Or(*formulas))])
        consistent, _ = self._solve(premises) if entailed == "unsat" else ("", None)
        if entailed == "unsat" and consistent == "sat":
            outcome.passed.append(f"{text} follows from the premises")
        else:
            outcome.notes.append(f"alternatives: {text}")
