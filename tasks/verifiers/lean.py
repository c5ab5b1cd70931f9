"""Lean 4: each claim is stated as a theorem and as its negation, and the user's Lean checks both.

Which claims. Only what the step asserts (roles: tasks.verifiers.roles), case by case, with the
values in force substituted (tasks.verifiers.knowledge): the claims arith judges. A claim arith
reads other than exactly (a rounded decimal, a congruence, an approximation) is not stated, since
Lean would refute what the step means.

Emission. A claim becomes a closed proposition over `Int` when it has only integers, sums,
products and natural powers, and over `Rat` otherwise (division, fractions, decimals). Symbols
bound by assignments (from the problem, earlier steps or this step) are replaced by their exact
values; a claim with a symbol nothing binds is not emitted. Every literal carries its type, so
nothing depends on Lean's elaboration order:

    theorem step_claim_1 : (21 : Int) - (3 : Int) = (18 : Int) := by first | decide | omega
    theorem step_claim_1_refuted : ¬ ((21 : Int) - (3 : Int) = (18 : Int)) := by first | decide | omega

`decide` is kernel-checked and needs only core Lean; `omega` (core since Lean 4.7) is the
fallback for linear integer facts. `Rat` claims need Mathlib's `norm_num`: they are emitted only
when `LeanConfig.mathlib` is set (run Lean inside a Mathlib project, e.g. with
`lean_command=("lake", "env", "lean")` and `project_dir` set), and then the file starts with
`import Mathlib` and the tactic is `first | norm_num | decide | omega`.

Verdict. The claim checks and its refutation fails: valid. The refutation checks and the claim
fails: invalid, with Lean's message as evidence. Otherwise unknown. A division by zero is never
emitted, because Lean defines x / 0 = 0 and would prove nonsense.

Which Lean. `LeanConfig.lean_command` when set; else the environment variable PRMFORGE_LEAN (a
path, or a command line such as `lake env lean`, split like a shell would); else `lean` on PATH.
No Lean here: when no toolchain is found, every step is `unknown` with reason "lean unavailable",
and `prmforge doctor` says so, naming the configured command.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.records import Verdict
from tasks.verifiers.arith import (
    NotEvaluable,
    StepOutcome,
    bind_assignments,
    bind_facts,
    check_relation,
    evaluate_exact,
    note_for,
    unread_into,
)
from tasks.verifiers.base import INVALID, UNKNOWN, VALID, Deadline, StepContext, run_guarded
from tasks.verifiers.claims import ASSIGNMENT, Claim
from tasks.verifiers.knowledge import CHECK, Plan, display, plan_step

LEAN_UNAVAILABLE = "lean unavailable"
LEAN_ENVIRONMENT_VARIABLE = "PRMFORGE_LEAN"
MAX_LEAN_EXPONENT = 4096
_LEAN_OPERATORS = {"=": "=", "!=": "≠", "<": "<", "<=": "≤", ">": ">", ">=": "≥"}


def lean_command_from_environment(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The command PRMFORGE_LEAN names, split like a shell would; () when it is unset or blank.

    >>> lean_command_from_environment({"PRMFORGE_LEAN": "lake env lean"})
    ('lake', 'env', 'lean')
    >>> lean_command_from_environment({"PRMFORGE_LEAN": "'/opt/my lean/bin/lean'"}), lean_command_from_environment({})
    (('/opt/my lean/bin/lean',), ())
    """
    return tuple(shlex.split(environ.get(LEAN_ENVIRONMENT_VARIABLE, "")))


@dataclass(frozen=True)
class LeanConfig:
    lean_command: tuple[str, ...] = field(
        default_factory=lean_command_from_environment,
        metadata={
            "help": (
                "command that runs Lean on a file, e.g. ('lake', 'env', 'lean'); default: env PRMFORGE_LEAN, "
                "else `lean` on PATH"
            )
        },
    )
    project_dir: str | None = field(
        default=None, metadata={"help": "working directory for the command (a Lake project)"}
    )
    mathlib: bool = field(
        default=False, metadata={"help": "Mathlib is importable: emit Rat claims with norm_num"}
    )
    timeout_ms: float = field(
        default=60_000.0, metadata={"help": "hard wall-time limit per step (Lean start-up included)"}
    )


class Unsupported(Exception):
    """A claim we do not state in Lean; the message says why."""


# ---------------------------------------------------------------------------------------------
# Emission


@dataclass(frozen=True)
class LeanTheorem:
    name: str
    claim_index: int
    refutation: bool
    line: int  # 1-based line of the file on which the theorem stands


@dataclass(frozen=True)
class LeanFile:
    text: str
    theorems: tuple[LeanTheorem, ...]
    skipped: tuple[tuple[int, str], ...]  # (claim index, why it was not emitted)


def _needs_rat(node: Any) -> bool:
    import sympy

    if isinstance(node, sympy.Float) or (isinstance(node, sympy.Rational) and node.q != 1):
        return True
    if isinstance(node, sympy.Pow) and isinstance(node.args[1], sympy.Integer) and node.args[1] < 0:
        return True
    return any(_needs_rat(argument) for argument in node.args)


def _literal(value: Any, domain: str) -> str:
    import sympy

    value = sympy.Rational(str(value)) if isinstance(value, sympy.Float) else value
    if value.q == 1:
        return f"({value.p} : {domain})"
    if domain != "Rat":
        raise Unsupported(f"fraction {value} in an Int claim")
    return f"(({value.p} : Rat) / ({value.q} : Rat))"


def lean_term(node: Any, domain: str, bindings: dict[Any, Any] | None = None) -> str:
    """A Lean 4 term for a sympy expression, every literal typed with `domain` (Int or Rat).

    >>> from sympy import Add, Integer, Mul
    >>> lean_term(Add(Integer(21), Mul(Integer(-1), Integer(3), evaluate=False), evaluate=False), "Int")
    '(21 : Int) - (3 : Int)'
    """
    import sympy

    bindings = bindings or {}
    if isinstance(node, (sympy.Rational, sympy.Float)):
        return _literal(node, domain)
    if isinstance(node, sympy.Symbol):
        if node not in bindings:
            raise Unsupported(f"free symbol {node}")
        return _literal(bindings[node], domain)
    if isinstance(node, sympy.UnevaluatedExpr):
        return lean_term(node.args[0], domain, bindings)
    if isinstance(node, sympy.Add):
        pieces = []
        for index, argument in enumerate(node.args):
            negated = _negated(argument)
            if negated is not None and index > 0:
                pieces.append(f"- {_wrapped(negated, domain, bindings)}")
            else:
                pieces.append(("+ " if index else "") + _wrapped(argument, domain, bindings))
        return " ".join(pieces)
    if isinstance(node, sympy.Mul):
        negated = _negated(node)
        if negated is not None:
            return f"-{_wrapped(negated, domain, bindings)}"
        numerator, denominator = [], []
        for argument in node.args:
            if isinstance(argument, sympy.Pow) and argument.args[1] == -1:
                denominator.append(_wrapped(argument.args[0], domain, bindings))
            else:
                numerator.append(_wrapped(argument, domain, bindings))
        text = " * ".join(numerator) if numerator else _literal(sympy.Integer(1), domain)
        if denominator:
            if domain != "Rat":
                raise Unsupported("division in an Int claim")
            text = f"({text}) / ({' * '.join(denominator)})"
        return text
    if isinstance(node, sympy.Pow):
        base, exponent = node.args
        if not isinstance(exponent, sympy.Integer) or abs(exponent) > MAX_LEAN_EXPONENT:
            raise Unsupported(f"exponent {exponent} is not a small integer literal")
        power = f"{_wrapped(base, domain, bindings)} ^ ({abs(int(exponent))} : Nat)"
        if exponent >= 0:
            return power
        if domain != "Rat":
            raise Unsupported("negative exponent in an Int claim")
        return f"(1 : Rat) / ({power})"
    raise Unsupported(f"{type(node).__name__} ({node}) is not stated in Lean")


def _negated(node: Any) -> Any | None:
    """x when node is Mul(-1, x), else None."""
    import sympy

    if isinstance(node, sympy.Mul) and len(node.args) == 2 and node.args[0] == -1:
        return node.args[1]
    return None


def _wrapped(node: Any, domain: str, bindings: dict[Any, Any]) -> str:
    text = lean_term(node, domain, bindings)
    return text if text.startswith("(") and _balanced_outer(text) else f"({text})"


def _balanced_outer(text: str) -> bool:
    """Whether the first '(' closes at the very end, so the text is already one parenthesised term."""
    depth = 0
    for index, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if depth == 0:
            return index == len(text) - 1
    return False


def lean_proposition(claim: Claim, bindings: dict[Any, Any], mathlib: bool) -> tuple[str, str]:
    """(proposition, domain) for a claim, or Unsupported with the reason."""
    for side in (claim.lhs, claim.rhs):
        try:
            evaluate_exact(side, bindings)
        except NotEvaluable as error:
            if "division by zero" in str(error):
                raise Unsupported("division by zero (Lean defines x / 0 = 0)") from error
    domain = "Rat" if _needs_rat(claim.lhs) or _needs_rat(claim.rhs) else "Int"
    if any(bindings[symbol].q != 1 for symbol in claim.free_symbols if symbol in bindings):
        domain = "Rat"
    if domain == "Rat" and not mathlib:
        raise Unsupported("rational claim needs Mathlib (set LeanConfig.mathlib inside a Mathlib project)")
    left = lean_term(claim.lhs, domain, bindings)
    right = lean_term(claim.rhs, domain, bindings)
    return f"{left} {_LEAN_OPERATORS[claim.operator]} {right}", domain


def emit_lean_file(
    claims: Sequence[Claim], bindings: dict[Any, Any] | None = None, mathlib: bool = False
) -> LeanFile:
    """A Lean 4 file stating each checkable claim and its negation, one theorem per line.

    Assignments to a symbol not yet bound are definitions: they bind and are not emitted.

    >>> from tasks.verifiers.reading import extract_claims
    >>> print(emit_lean_file(extract_claims("21 - 3 = 18").claims).text)
    -- prmforge: each claim of one step, stated and refuted; exactly one of each pair should check.
    <BLANKLINE>
    theorem step_claim_1 : (21 : Int) - (3 : Int) = (18 : Int) := by first | decide | omega
    theorem step_claim_1_refuted : ¬ ((21 : Int) - (3 : Int) = (18 : Int)) := by first | decide | omega
    <BLANKLINE>
    """
    bindings = dict(bindings or {})
    tactic = "first | norm_num | decide | omega" if mathlib else "first | decide | omega"
    lines = ["import Mathlib"] if mathlib else []
    lines += [
        "-- prmforge: each claim of one step, stated and refuted; exactly one of each pair should check.",
        "",
    ]
    theorems: list[LeanTheorem] = []
    skipped: list[tuple[int, str]] = []
    for index, claim in enumerate(claims, start=1):
        if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
            bind_assignments([claim], bindings)
            continue
        try:
            proposition, _ = lean_proposition(claim, bindings, mathlib)
        except Unsupported as error:
            skipped.append((index, str(error)))
            continue
        name = f"step_claim_{index}"
        lines.append(f"theorem {name} : {proposition} := by {tactic}")
        theorems.append(LeanTheorem(name, index, False, len(lines)))
        lines.append(f"theorem {name}_refuted : ¬ ({proposition}) := by {tactic}")
        theorems.append(LeanTheorem(f"{name}_refuted", index, True, len(lines)))
    return LeanFile("\n".join(lines) + "\n", tuple(theorems), tuple(skipped))


# ---------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class LeanMessage:
    file: str
    line: int
    column: int
    severity: str  # error, warning or info
    text: str


_MESSAGE_FORMS = (
    re.compile(
        r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning|info)(?:\([^)]*\))?: ?(?P<text>.*)$"
    ),
    re.compile(
        r"^(?P<severity>error|warning|info): (?P<file>.+?):(?P<line>\d+):(?P<column>\d+): ?(?P<text>.*)$"
    ),
)


def parse_lean_messages(output: str) -> tuple[LeanMessage, ...]:
    """Lean's `file:line:col: severity: text` messages; continuation lines join the message above.

    >>> parse_lean_messages("a.lean:4:2: error: unsolved goals\\n⊢ False")[0].text
    'unsolved goals\\n⊢ False'
    """
    messages: list[dict[str, Any]] = []
    for raw_line in output.splitlines():
        for form in _MESSAGE_FORMS:
            match = form.match(raw_line)
            if match:
                messages.append(
                    {**match.groupdict(), "line": int(match["line"]), "column": int(match["column"])}
                )
                break
        else:
            if messages:
                messages[-1]["text"] += "\n" + raw_line
    return tuple(LeanMessage(**message) for message in messages)


@dataclass(frozen=True)
class ClaimOutcome:
    claim_index: int
    outcome: str  # VALID, INVALID or UNKNOWN
    detail: str


def judge_lean_output(lean_file: LeanFile, messages: Sequence[LeanMessage]) -> list[ClaimOutcome]:
    """Per emitted claim: which of the claim and its refutation Lean accepted.

    A theorem is accepted when no error points into its line. Errors before the first theorem
    (a failed import, say) make every claim unknown.
    """
    errors = [message for message in messages if message.severity == "error"]
    first_line = min((theorem.line for theorem in lean_file.theorems), default=0)
    preamble = [message for message in errors if message.line < first_line]
    failures: dict[str, list[str]] = {}
    for theorem in lean_file.theorems:
        failures[theorem.name] = [message.text for message in errors if message.line == theorem.line]
    outcomes = []
    for theorem in lean_file.theorems:
        if theorem.refutation:
            continue
        refutation = f"{theorem.name}_refuted"
        claim_failed, refutation_failed = failures[theorem.name], failures[refutation]
        if preamble:
            detail = "; ".join(message.text for message in preamble)
            outcomes.append(
                ClaimOutcome(theorem.claim_index, UNKNOWN, f"lean could not start checking: {detail}")
            )
        elif not claim_failed and refutation_failed:
            outcomes.append(ClaimOutcome(theorem.claim_index, VALID, f"{theorem.name} checked"))
        elif claim_failed and not refutation_failed:
            outcomes.append(
                ClaimOutcome(
                    theorem.claim_index, INVALID, f"{theorem.name} refuted; lean: {' | '.join(claim_failed)}"
                )
            )
        elif claim_failed and refutation_failed:
            detail = " | ".join(claim_failed + refutation_failed)
            outcomes.append(
                ClaimOutcome(
                    theorem.claim_index,
                    UNKNOWN,
                    f"lean proved neither {theorem.name} nor its negation: {detail}",
                )
            )
        else:
            outcomes.append(
                ClaimOutcome(
                    theorem.claim_index, UNKNOWN, f"lean accepted both {theorem.name} and its negation"
                )
            )
    return outcomes


# ---------------------------------------------------------------------------------------------
# Running Lean


def find_lean(config: LeanConfig | None = None) -> list[str] | None:
    """The command that runs Lean, or None when no toolchain is found."""
    config = config or LeanConfig()
    if config.lean_command:
        executable = config.lean_command[0]
        resolved = shutil.which(executable) or (executable if os.access(executable, os.X_OK) else None)
        return [resolved, *config.lean_command[1:]] if resolved else None
    found = shutil.which("lean")
    return [found] if found else None


def _run(command: list[str], cwd: str, timeout_s: float) -> tuple[int | None, str]:
    """(exit code, or None on timeout; stdout and stderr together)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
        errors="replace",
    )
    try:
        output, _ = process.communicate(timeout=max(timeout_s, 0.001))
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def lean_status(config: LeanConfig | None = None) -> str:
    """One line for `prmforge doctor`: whether Lean was found, where, and its version."""
    config = config or LeanConfig()
    command = find_lean(config)
    if command is None:
        configured = config.lean_command
        where = (
            f"configured command {shlex.join(configured)!r} not found" if configured else "no `lean` on PATH"
        )
        return (
            f"{LEAN_UNAVAILABLE}: {where} (install Lean 4 with elan, or set {LEAN_ENVIRONMENT_VARIABLE} "
            "to the command that runs it)"
        )
    try:
        code, output = _run([*command, "--version"], cwd=tempfile.gettempdir(), timeout_s=30)
    except OSError as error:
        return f"{LEAN_UNAVAILABLE}: {' '.join(command)} does not run ({error})"
    version = output.strip().splitlines()[0] if output.strip() else "no version printed"
    if code != 0:
        return f"lean found at {' '.join(command)} but `--version` failed (exit {code}): {version}"
    return f"lean found at {' '.join(command)}: {version}"


def lean_claims(plan: Plan, deadline: Deadline | None = None) -> tuple[list[Claim], list[str]]:
    """The step's asserted claims with the values in force substituted, as Lean states them.

    The same statements arith judges, case by case. A claim arith reads other than exactly (a
    rounded decimal, a congruence, an approximation) is not stated: Lean would refute what the
    step means. Returns the claims and what could not be stated, with the reason.
    """
    outcome = StepOutcome()
    claims: list[Claim] = []
    bindings: dict[Any, Any] = {}
    bind_facts(plan.base, bindings, deadline)
    top = None
    for item in plan.items:
        if item.fresh_scope:
            top = dict(bindings) if top is None else top
            bindings = dict(top)
        if item.mode == CHECK:
            claim = item.claim
            if claim.kind == ASSIGNMENT and claim.lhs not in bindings:
                bind_assignments([claim], bindings, deadline)
            elif claim.operator not in _LEAN_OPERATORS or claim.modulus is not None:
                outcome.unclear.append(f"{display(claim.text)}: not stated in Lean (read modulo or approximately)")
            else:
                check = check_relation(claim, bindings, deadline)
                exact = "rounded" not in check.detail and "whole part" not in check.detail
                if check.outcome == UNKNOWN or not exact:
                    outcome.unclear.append(check.detail)
                else:
                    values = {symbol: bindings[symbol] for symbol in claim.free_symbols if symbol in bindings}
                    claims.append(_substituted(claim, values))
        elif item.mode != CHECK and item.mode not in ("premise", "bind"):
            outcome.notes.append(note_for(item))
        bind_facts(item.adds, bindings, deadline)
    unread_into(plan, outcome)
    return claims, outcome.unclear


def _substituted(claim: Claim, values: dict[Any, Any]) -> Claim:
    if not values:
        return claim
    from dataclasses import replace

    relation = claim.relation.func(claim.lhs.xreplace(values), claim.rhs.xreplace(values), evaluate=False)
    return replace(claim, relation=relation)


class LeanVerifier:
    """States each claim and its negation in Lean 4 and lets the user's toolchain decide."""

    name = "lean"

    def __init__(self, config: LeanConfig | None = None) -> None:
        self.config = config or LeanConfig()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        return run_guarded(
            self.name, self.config.timeout_ms, lambda deadline: self._judge(step_text, context, deadline)
        )

    def _judge(self, step_text: str, context: StepContext, deadline: Deadline) -> Verdict:
        command = find_lean(self.config)
        if command is None:
            return Verdict(self.name, UNKNOWN, evidence=lean_status(self.config), reason=LEAN_UNAVAILABLE)
        claims, unclear = lean_claims(plan_step(context, step_text), deadline)
        lean_file = emit_lean_file(claims, {}, self.config.mathlib)
        unclear += [f"{display(claims[index - 1].text)}: {why}" for index, why in lean_file.skipped]
        if not lean_file.theorems:
            return Verdict(self.name, UNKNOWN, reason="; ".join(unclear) or "no checkable claims in step")
        with tempfile.TemporaryDirectory(prefix="prmforge-lean-") as folder:
            path = Path(folder) / "StepClaims.lean"
            path.write_text(lean_file.text, encoding="utf-8")
            code, output = _run(
                [*command, str(path)], self.config.project_dir or folder, deadline.remaining_ms() / 1000
            )
        if code is None:
            return Verdict(
                self.name,
                UNKNOWN,
                evidence=output[-2000:],
                reason=f"lean timeout after {self.config.timeout_ms:g} ms",
            )
        messages = parse_lean_messages(output)
        if code not in (0, 1) or (code == 1 and not any(message.severity == "error" for message in messages)):
            return Verdict(
                self.name, UNKNOWN, evidence=output[-2000:], reason=f"lean exited with code {code}"
            )
        outcomes = judge_lean_output(lean_file, messages)
        text = {index: display(claim.text) for index, claim in enumerate(claims, start=1)}
        failed = [f"{text[o.claim_index]}: {o.detail}" for o in outcomes if o.outcome == INVALID]
        passed = [f"{text[o.claim_index]}: {o.detail}" for o in outcomes if o.outcome == VALID]
        unclear += [f"{text[o.claim_index]}: {o.detail}" for o in outcomes if o.outcome == UNKNOWN]
        if failed:
            return Verdict(self.name, INVALID, evidence="; ".join(failed))
        if unclear:
            return Verdict(self.name, UNKNOWN, evidence="; ".join(passed), reason="; ".join(unclear))
        return Verdict(self.name, VALID, evidence="; ".join(passed))
