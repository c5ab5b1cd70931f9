"""Z3: a claim is valid if the premises entail it, invalid if it contradicts them.

For each claim C of the step, with premises P (the problem's relations, the earlier steps'
claims and this step's earlier claims):
- P ∧ ¬C unsat: C follows from P, valid.
- P ∧ C unsat: C contradicts P, invalid; the evidence is a model of P ∧ ¬C.
- both sat: C is neither entailed nor refuted, unknown. A solver timeout is unknown too.

Only relations with free symbols become premises. A closed relation (`3 + 4 = 8`) constrains
nothing, and a false one would make every later claim "follow" from a contradiction. An
assignment to a symbol no premise mentions (`x = 3*4`) is a definition: it becomes a premise
and is not checked. Premises z3 cannot take (an unsupported form) are left out, which keeps
both verdicts sound: fewer premises can only turn valid or invalid into unknown.

Symbols are Reals by default (`symbol_sort="int"` makes them Ints); every literal is a Real, so
`7/2` is 3.5 and never integer division. Closed subexpressions are evaluated exactly first
(tasks.verifiers.arith), which also turns factorials and roots of perfect powers into numbers.
z3 is imported lazily, and each verify call uses its own z3 Context, so threads do not share one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.records import Verdict
from tasks.verifiers.arith import NotEvaluable, evaluate_exact
from tasks.verifiers.base import INVALID, UNKNOWN, VALID, Deadline, StepContext, VerifierTimeout, run_guarded
from tasks.verifiers.claims import ASSIGNMENT, Claim, extract_claims, premises_of

MAX_SYMBOLIC_EXPONENT = 16


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
        translated = self.expression(base)
        result = self.number(type(exponent_value)(1))
        for _ in range(abs(int(exponent_value))):
            result = result * translated
        # z3's x/0 is unspecified rather than an error, so a symbolic divisor may make a claim
        # neither provable nor refutable; that only yields unknown.
        return result if exponent_value >= 0 else self.number(type(exponent_value)(1)) / result

    def relation(self, claim: Claim) -> Any:
        left, right = self.expression(claim.lhs), self.expression(claim.rhs)
        return {
            "=": lambda: left == right,
            "!=": lambda: left != right,
            "<": lambda: left < right,
            "<=": lambda: left <= right,
            ">": lambda: left > right,
            ">=": lambda: left >= right,
        }[claim.operator]()


def _model_text(model: Any) -> str:
    pairs = sorted((declaration.name(), str(model[declaration])) for declaration in model.decls())
    return "[" + ", ".join(f"{name} = {value}" for name, value in pairs) + "]"


class Z3Verifier:
    """Entailment and refutation of each claim by the premises, with z3."""

    name = "z3"

    def __init__(self, config: Z3Config | None = None) -> None:
        self.config = config or Z3Config()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        return run_guarded(
            self.name, self.config.timeout_ms, lambda deadline: self._judge(step_text, context, deadline)
        )

    def _check(self, z3: Any, z3_context: Any, formulas: list[Any], deadline: Deadline) -> tuple[str, Any]:
        """('sat', model), ('unsat', None) or ('unknown', reason), within the remaining budget."""
        budget = int(min(self.config.call_timeout_ms, deadline.remaining_ms()))
        if budget <= 0:
            raise VerifierTimeout(f"timeout after {self.config.timeout_ms:g} ms")
        solver = z3.Solver(ctx=z3_context)
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

    def _judge(self, step_text: str, context: StepContext, deadline: Deadline) -> Verdict:
        extraction = extract_claims(step_text)
        unclear = [f"cannot parse {item.text!r}: {item.reason}" for item in extraction.unparsed]
        if not extraction.claims:
            return Verdict(self.name, UNKNOWN, reason="; ".join(unclear) or "no checkable claims in step")
        import z3

        z3_context = z3.Context()
        translator = _Translator(z3, z3_context, self.config.symbol_sort)
        premises: list[Any] = []
        for claim in premises_of(context).relations:
            if claim.free_symbols:
                try:
                    premises.append(translator.relation(claim))
                except Unsupported:
                    continue
        if premises:
            status, _ = self._check(z3, z3_context, premises, deadline)
            if status == "unsat":
                return Verdict(
                    self.name,
                    UNKNOWN,
                    reason="premises are inconsistent: earlier relations contradict each other",
                )

        failed, passed = [], []
        for claim in extraction.claims:
            try:
                formula = translator.relation(claim)
            except Unsupported as error:
                unclear.append(f"{claim.text}: unsupported form: {error}")
                continue
            mentioned = {str(symbol) for premise in premises for symbol in _symbols(z3, premise)}
            if claim.kind == ASSIGNMENT and str(claim.lhs) not in mentioned:
                premises.append(formula)  # a definition
                continue
            status, payload = self._check(z3, z3_context, [*premises, z3.Not(formula)], deadline)
            if status == "unsat":
                passed.append(f"{claim.text} follows from the premises")
                continue
            if status == "unknown":
                unclear.append(f"{claim.text}: {payload}")
                continue
            counterexample = _model_text(payload)
            refuted, detail = self._check(z3, z3_context, [*premises, formula], deadline)
            if refuted == "unsat":
                failed.append(
                    f"{claim.text} contradicts the premises; model of premises and not claim: {counterexample}"
                )
            elif refuted == "unknown":
                unclear.append(f"{claim.text}: {detail}")
            else:
                unclear.append(
                    f"{claim.text} neither follows from nor contradicts the premises (counterexample {counterexample})"
                )
                # Consistent with the premises: later claims of the step may build on it.
                premises.append(formula)
        if failed:
            return Verdict(self.name, INVALID, evidence="; ".join(failed))
        if unclear:
            return Verdict(self.name, UNKNOWN, evidence="; ".join(passed), reason="; ".join(unclear))
        if passed:
            return Verdict(self.name, VALID, evidence="; ".join(passed))
        return Verdict(self.name, UNKNOWN, reason="no checkable claims in step (only definitions)")


def _symbols(z3: Any, formula: Any) -> set[Any]:
    """The uninterpreted constants in a z3 formula."""
    found, stack = set(), [formula]
    while stack:
        node = stack.pop()
        if z3.is_const(node) and node.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            found.add(node)
        else:
            stack.extend(node.children())
    return found
