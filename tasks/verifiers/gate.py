"""The gate an `invalid` finding passes before it stands: an invalid needs more evidence than a valid.

A false `invalid` does more harm than `unknown`: it mislabels a good step, and consensus then
drops the sample or labels it wrongly. Roles (`tasks.verifiers.roles`) already keep cases,
conditions and rejected claims from being judged; they read words one relation at a time and
each new wording can slip past them. The gate is the second, coarser line, shared by arith and
z3: a relation found false is called `invalid` only when all four rules let it through, and
otherwise it is `unknown` with the rule's reason.

1. Asserted plainly. Its sentence carries no sign that it is not stated as true: a question
   mark, a negation or a rejection (`not`, `isn't`, `fails`, `impossible`, `contradiction`,
   `wrong`, `≠`, ...; a negated property of a value, `not prime`, is no denial of the relation),
   or a hypothesis (`if`, `would`, `suppose`, `assume`, `whether`, ...). Model text states a
   relation it does not hold for true in exactly these sentences ("that is 16 < 5, which is not
   true", "if u = 1, then ...", "2 + 2 = 5 would follow").
2. Self-contained. A relation with names: no name is indexed by a letter (`x_n`, `a_{k+1}`: the
   index takes values) and each side has one exact value (z3: the premises give it one). A
   relation this step and the problem decide alone is self-contained. One that needs a value an
   earlier step gave must have it unambiguous: no name of it given two values by the solution so
   far (a name bound anew in a case, a rebinding), and no case, condition or trial opened by its
   own sentence (`for`, `when`, `let`, `with`, `try`, `check`, `Case 2:`, ...): the name there is
   likely used anew.
3. Beyond its stated precision. A relation with decimals is invalid only when its sides differ
   by more than 0.5% and one unit of its least precise decimal; an approximation (`≈` or `...`
   in it or its sentence, `about`, `rounded`) only by more than 5% and five such units.
4. Read without doubt. Both sides have exact values, and the text has no form a reader may take
   two ways: a function's value read elsewhere (`g(3)` that an earlier step bound) or a letter
   before a bracket (`p(4)`: p times 4, or p at 4?; a Greek letter too, `\\sigma(2^3)`; a
   function the text defines is expanded and decides), a bracketed number next to a number or a
   bracket (`2(5)`, `(2)(5)`: a product, or a label or list marker), a congruence whose modulus
   its sentence does not write, or LaTeX beyond plain arithmetic (`\\sum`, `\\log`,
   `\\overline`: left to a general LaTeX parser, whose readings are not certain).

The rules only ever turn `invalid` into `unknown`; `valid` verdicts never pass through the gate.
A plain wrong computation ("Then 7 × 8 = 54.") passes all four and stays invalid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tasks.verifiers.claims import ASSIGNMENT, GREEK, Claim

# Rule 1: signs that a sentence does not assert its relations.
QUESTION_MARKS = frozenset({"?"})
NEGATION_WORDS = frozenset(
    """not never cannot nor neither false untrue impossible contradiction contradicts contradictory
    absurd wrong incorrect extraneous invalid fail fails failed failing reject rejected discard
    discarded mistake error oops wait ≠""".split()
)
# "isn't", "doesn't", "can't": the reader splits them at the apostrophe.
NEGATED_AUXILIARIES = frozenset("isn aren wasn weren doesn don didn can couldn wouldn shouldn hasn haven".split())
HYPOTHESIS_WORDS = frozenset(
    """if unless whether would could might should suppose supposing supposed assume assuming assumed
    hypothetically""".split()
)
# "not prime", "not divisible by 3", "isn't an integer": a negated property of a value, not of
# the relation before it.
PROPERTY_WORDS = frozenset(
    """prime composite zero integer integers whole divisible positive negative even odd square cube
    real rational irrational multiple factor divisor digit""".split()
)
# Rule 2: words that open a case, a condition or a trial of a sentence's own ("<case>": a
# `Case 2:` marker).
CASE_WORDS = frozenset(
    """for when whenever where with let given at say take taking consider considering provided check
    checking test testing tested try trying tried trial guess <case>""".split()
)
# Rule 3: tolerances, relative to the larger side and in units of the last stated digit.
DECIMAL_RELATIVE, DECIMAL_UNITS = 0.005, 1
APPROXIMATE_RELATIVE, APPROXIMATE_UNITS = 0.05, 5
APPROXIMATION_WORDS = frozenset(
    "about approximately approx roughly around nearly almost rounded round rounding estimate estimated ≈".split()
)
_DECIMAL_LITERAL = re.compile(r"(?<![\d.])\d+\.(\d+)")
_TRUNCATED = re.compile(r"\.\.\.|\\[lc]?dots|…")
# Rule 4: LaTeX commands, a name applied to a bracket, a bracketed number beside a number.
# LaTeX read exactly by the project's own translation (claims.latex_to_plain) or with one plain
# meaning; any other command (`\sum`, `\log`, `\sin`, `\overline`, `\cdots`) is left to a
# general LaTeX parser, whose readings of model text are not certain enough for an invalid.
PLAIN_COMMANDS = frozenset(
    """frac dfrac tfrac sqrt binom dbinom tbinom cdot times div left right lfloor rfloor lceil rceil
    pi text mathrm mbox textbf operatorname pmod bmod mod equiv approx le leq ge geq lt gt ne neq
    quad qquad big bigg Big Bigg displaystyle""".split()
) | GREEK  # Greek letters are names
_COMMAND = re.compile(r"\\([A-Za-z]+)")
_APPLICATION = re.compile(r"(?<![A-Za-z])(\\?[A-Za-z]+)\s*(?:_\{?[A-Za-z0-9]+\}?)?\s*(?:\\left\s*)?\(")
_BRACKETED_NUMBER = r"(?:\\left\s*)?\(\s*[-+]?\d[\d.,]*\s*(?:\\right\s*)?\)"
_BESIDE_BRACKET = re.compile(rf"[\d)}}]\s*{_BRACKETED_NUMBER}|{_BRACKETED_NUMBER}\s*[\d(A-Za-z]")
_LABEL = re.compile(r"^\s*\(?\d{1,2}[.)]\s")
MODULUS_MARK = "<mod>"  # the sentence writes a modulus (roles.sentence_marks)
_LETTER_INDEX = re.compile(r"_\{?[^}]*[A-Za-z]")


@dataclass(frozen=True)
class Finding:
    """An `invalid` finding and what the gate weighs.

    `sides`: the two values compared (exact Rationals, or floats for an approximation), None
    when a side has no exact value. `names_from_earlier`: some name of the claim takes its value
    from an earlier step. `rebound`: names given more than one value in the solution so far.
    """

    claim: Claim
    sentence: tuple[str, ...]
    sides: tuple[Any, Any] | None
    names_from_earlier: bool = False
    rebound: frozenset[str] = frozenset()


def base_name(symbol: Any) -> str:
    """`x'2` -> `x`: the name as written, without its version mark."""
    return str(symbol).split("'")[0]


def _version(symbol: Any) -> int:
    text = str(symbol)
    return int(text.split("'")[1]) if "'" in text and text.split("'")[1].isdigit() else 0


def not_asserted(sentence: Iterable[str]) -> str | None:
    """Rule 1: the sign in the sentence that it may not assert its relations, or None.

    >>> not_asserted(["that", "is", ",", "which", "is", "not", "true"]), not_asserted(["then"])
    ("its sentence says 'not': not asserted plainly", None)
    """
    words = list(sentence)
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        negated = word in NEGATED_AUXILIARIES and following in ("t", "'", "’")  # the reader reads t as math
        rest = [later for later in words[index + 1 :] if later not in ("t", "'", "’")]
        if (word == "not" or negated) and _negates_property(rest):
            continue
        if word in QUESTION_MARKS or word in NEGATION_WORDS or word in HYPOTHESIS_WORDS or negated:
            shown = f"{word}'t" if negated else word
            return f"its sentence says {shown!r}: not asserted plainly"
    return None


def _negates_property(after: list[str]) -> bool:
    """`not prime`, `not a perfect square`, `not divisible`: the negation denies a property."""
    words = [word for word in after[:3] if word not in ("a", "an", "perfect", "exactly")] or [""]
    return words[0] in PROPERTY_WORDS


def not_self_contained(finding: Finding) -> str | None:
    """Rule 2: why the claim's names do not settle its value on their own, or None."""
    names = finding.claim.free_symbols
    if not names:
        return None
    for symbol in sorted(names, key=str):
        name = base_name(symbol)
        if _LETTER_INDEX.search(name):
            return f"{name} is indexed by a letter: the index takes values"
    if finding.sides is None:
        return "its names have no single exact value"
    if finding.names_from_earlier:  # this step and the problem alone do not decide it
        for symbol in sorted(names, key=str):
            if _version(symbol) > 1 or base_name(symbol) in finding.rebound:
                return f"{base_name(symbol)} takes its value from an earlier step and is given more than one value in the solution"
        case = next((word for word in finding.sentence if word in CASE_WORDS), None)
        if case is not None:
            return f"a name takes its value from an earlier step, and its sentence opens a case ({case!r})"
    return None


def _last_digit_unit(text: str) -> float | None:
    places = [len(match.group(1)) for match in _DECIMAL_LITERAL.finditer(text)]
    return 10.0 ** -min(places) if places else None


def within_precision(finding: Finding) -> str | None:
    """Rule 3: why a claim with decimals or an approximation may only be imprecise, or None."""
    claim = finding.claim
    approximate = (
        claim.operator == "≈"
        or bool(_TRUNCATED.search(claim.text))
        or not APPROXIMATION_WORDS.isdisjoint(finding.sentence)
    )
    unit = _last_digit_unit(claim.text)
    if not approximate and unit is None:
        return None
    if finding.sides is None:
        return "a side has no exact value"
    try:
        left, right = (float(side) for side in finding.sides)
    except OverflowError:
        left = right = math.inf
    if not (math.isfinite(left) and math.isfinite(right)):
        return "its sides are too large to weigh against its stated precision"
    gap, scale = abs(left - right), max(abs(left), abs(right))
    relative, units = (APPROXIMATE_RELATIVE, APPROXIMATE_UNITS) if approximate else (DECIMAL_RELATIVE, DECIMAL_UNITS)
    if gap > relative * scale and (unit is None or gap > units * unit):
        return None
    kind = "an approximation" if approximate else "decimals"
    return f"with {kind}, off by {gap:.6g} only (invalid needs more than {relative:.1%} and {units} units)"


def _application(claim: Claim, side: str) -> str | None:
    """A function applied in the text whose reading is in doubt: its value read elsewhere (a name
    like `g(3)` that an earlier step bound), or a letter before a bracket read as a product of a
    name (`p(4)`: p times 4, or p at 4?). A function the text defines is expanded, which is sure."""
    from sympy.core.function import AppliedUndef

    names = {base_name(symbol) for symbol in claim.free_symbols}
    read_elsewhere = next((name for name in sorted(names) if "(" in name), None)
    if read_elsewhere is not None or claim.relation.atoms(AppliedUndef):
        return f"{read_elsewhere or 'a function applied'} may be a function's value read elsewhere"
    for match in _APPLICATION.finditer(side):
        name = match.group(1)
        if name.startswith("\\"):
            # A Greek letter is a letter written as a command: `\sigma(2^3)` is σ at 8 or σ times
            # 8 as `p(4)` is (the LaTeX parser takes an application before a lone number, a
            # product before any other bracket). Other commands: the rule on commands decides.
            if name[1:] not in GREEK or name[1:] not in names:
                continue
            return f"'{match.group(0).strip()}' may be a function applied, or a product"
        if len(name) > 1 or name in names:
            return f"{match.group(0).strip()!r} may be a function applied, or a product"
    return None


def not_read_without_doubt(finding: Finding) -> str | None:
    """Rule 4: a form of the claim's text a reader may take two ways, or a side with no exact value."""
    if finding.sides is None:
        return "a side has no exact value"
    if finding.claim.modulus is not None and MODULUS_MARK not in finding.sentence:
        return f"its modulus ({finding.claim.modulus}) is not written in its sentence"
    for side in (finding.claim.left_text, finding.claim.right_text):
        unusual = next((name for name in _COMMAND.findall(side) if name not in PLAIN_COMMANDS), None)
        if unusual is not None:
            return f"'\\{unusual}' is read by a general LaTeX parser, not exactly"
        application = _application(finding.claim, side)
        if application is not None:
            return application
        beside = _BESIDE_BRACKET.search(side)
        if beside is not None:
            return f"{beside.group(0).strip()!r}: a bracket beside a number may be a product, a label or a list marker"
        if _LABEL.match(side):
            return f"{side.strip()!r} may start with a label or list marker"
    return None


RULES: tuple[Callable[[Finding], str | None], ...] = (
    lambda finding: not_asserted(finding.sentence),
    not_self_contained,
    not_read_without_doubt,
    within_precision,
)


def invalid_blocked(finding: Finding) -> str | None:
    """Why an `invalid` finding may not stand (the first rule that stops it), or None if it stands.

    >>> from tasks.verifiers.claims import parse_span
    >>> claim = parse_span("7 * 8 = 54", latex=False)[0]
    >>> from sympy import Integer
    >>> invalid_blocked(Finding(claim, ("then",), (Integer(56), Integer(54)))) is None
    True
    >>> invalid_blocked(Finding(claim, ("if", "then"), (Integer(56), Integer(54))))
    "its sentence says 'if': not asserted plainly"
    """
    for rule in RULES:
        reason = rule(finding)
        if reason is not None:
            return reason
    return None


def binding_values(statements: Iterable[Any], evaluate: Callable[[Any], Any]) -> dict[str, frozenset[Any]]:
    """The values each name is bound to in the statements (any role: a case's binding counts, and
    so does the problem's).

    A value is the exact value of a binding's right side; a right side with names (a formula)
    is no value. `evaluate` gives the exact value or raises.
    """
    values: dict[str, set[Any]] = {}
    for statement in statements:
        claim = statement.claim
        if claim.kind != ASSIGNMENT or claim.operator != "=" or not claim.lhs.is_Symbol or claim.rhs.free_symbols:
            continue
        try:
            value = evaluate(claim.rhs)
        except Exception:  # noqa: BLE001 - a value we cannot compute is no value
            continue
        values.setdefault(base_name(claim.lhs), set()).add(value)
    return {name: frozenset(found) for name, found in values.items()}


def rebound_names(values: dict[str, frozenset[Any]], claim: Claim) -> frozenset[str]:
    """The names of `claim` the solution binds to two different values, the claim's own binding
    included: `x = 13` after `Let x = 12.` may use x anew, as a second case does."""
    names = {base_name(symbol) for symbol in claim.free_symbols}
    return frozenset(name for name in names if len(values.get(name, ())) > 1)
