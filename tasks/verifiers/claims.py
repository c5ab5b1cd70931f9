"""Claim extraction: the equalities, inequalities and assignments a step asserts, as sympy.

What counts as a claim:
- A math span in prose (`Step 2: 21 - 3 = 18`, `so 14 + 7 = 21 apples`), a LaTeX region
  (`$3 \\cdot 4 = 12$`, `\\(...\\)`, `\\[...\\]`) or bare LaTeX (`\\frac{1}{2} \\times 8 = 4`), and
  GSM8K calculator annotations (`<<48/2=24>>`).
- A chain `a = b = c` gives two claims, `a = b` and `b = c`; `1 < x < 5` gives two as well.
- A link whose left side is a lone symbol (`x = 3*4`) is an assignment. Verifiers treat an
  assignment to a symbol that nothing bound yet as a definition (not checked), and one to a
  symbol already bound as an equality to check.

What is not a claim:
- The answer line (`The answer is 18.`, `#### 18`): the final answer is judged against the
  reference by the answer checker, not by step verifiers, so it is removed before extraction.
- Python code (fenced blocks, `>>>` lines): that is the code verifier's input.

A relation we cannot read with certainty (`20% of 50 = 10`, `3 apples * 4 = 12`, an
approximate `≈`) is never guessed at: it is returned in `Extraction.unparsed` with the reason,
and verifiers turn it into `unknown`.

sympy and the LaTeX parser are imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.verifiers.base import StepContext

# The longest span we hand to a parser: model output can hold pathological text.
MAX_SPAN_CHARS = 400

# Words that, next to a span, mean the arithmetic continues in words ("20% of 50 = 10").
CONNECTIVES = frozenset(
    """of times plus minus over per by divided multiplied add added subtract subtracted less
    more fewer than half twice double triple thrice percent squared cubed sqrt root log ln sin
    cos tan exp abs max min floor ceil mod gcd lcm choose""".split()
)

RELATION_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")
ASSIGNMENT, EQUALITY, INEQUALITY = "assignment", "equality", "inequality"


@dataclass(frozen=True)
class Claim:
    """One asserted relation. `relation` is an unevaluated sympy relational."""

    relation: Any  # sympy.core.relational.Relational
    text: str  # "21 - 3 = 18", rebuilt from the two sides' source text
    left_text: str
    right_text: str
    operator: str  # one of RELATION_OPERATORS
    kind: str  # ASSIGNMENT, EQUALITY or INEQUALITY

    @property
    def lhs(self) -> Any:
        return self.relation.lhs

    @property
    def rhs(self) -> Any:
        return self.relation.rhs

    @property
    def free_symbols(self) -> frozenset:
        return frozenset(self.relation.lhs.free_symbols | self.relation.rhs.free_symbols)


@dataclass(frozen=True)
class Unparsed:
    """A fragment that asserts a relation we could not read, and why."""

    text: str
    reason: str


@dataclass(frozen=True)
class Extraction:
    claims: tuple[Claim, ...] = ()
    unparsed: tuple[Unparsed, ...] = ()


@dataclass(frozen=True)
class Premises:
    """What a step may rely on, as claims and numbers."""

    quantities: tuple[Fraction, ...]  # numbers given in the problem (not constraints)
    given: tuple[Claim, ...]  # relations stated in the problem: `x = 5`, `2x + 3 = 11`
    earlier: tuple[Claim, ...]  # claims of the earlier steps, in order

    @property
    def relations(self) -> tuple[Claim, ...]:
        return self.given + self.earlier


class _CannotParse(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Text preparation

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_PROMPT_LINE = re.compile(r"^[ \t]*(?:>>>|\.\.\.)(?: .*)?$", re.MULTILINE)
_ANSWER_LINE = re.compile(
    r"^[ \t]*(?:####.*|(?:so,? )?the (?:final )?answer is\b.*)$", re.IGNORECASE | re.MULTILINE
)
_SPECIAL = re.compile(
    r"<<(?P<annotation>[^<>]*)>>|\$\$(?P<display>.+?)\$\$|\\\((?P<inline>.+?)\\\)|\\\[(?P<bracket>.+?)\\\]|\$",
    re.DOTALL,
)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_UNICODE = {"−": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "≤": "<=", "≥": ">=", "≠": "!="}

PROSE, LATEX, ANNOTATION = "prose", "latex", "annotation"


def _normalize_unicode(text: str) -> str:
    for symbol, ascii_form in _UNICODE.items():
        text = text.replace(symbol, ascii_form)
    return text


def _segments(text: str) -> list[tuple[str, str]]:
    """The step's text as (kind, text) pieces in reading order: prose, LaTeX regions, annotations.

    Code, the answer line and GSM8K `<<...>>` annotations leave the prose (an annotation becomes
    its own piece). A `$` whose pair encloses no LaTeX (no backslash or brace) is a currency sign
    or a plain delimiter and is dropped: `$5 + $3 = $8` reads as `5 + 3 = 8`.
    """
    text = _FENCE.sub("\n", text)
    text = _PROMPT_LINE.sub("", text)
    text = _ANSWER_LINE.sub("", text)
    segments: list[tuple[str, str]] = []
    prose: list[str] = []

    def flush() -> None:
        joined = "".join(prose)
        prose.clear()
        if joined.strip():
            joined = _TEXT_COMMAND.sub(lambda match: f" {match.group(1)} ", joined)
            segments.append((PROSE, _TIMES_X.sub(" * ", _normalize_unicode(joined))))

    index = 0
    while True:
        match = _SPECIAL.search(text, index)
        if match is None:
            prose.append(text[index:])
            break
        prose.append(text[index : match.start()])
        index = match.end()
        if match["annotation"] is not None:
            segments.append((ANNOTATION, match["annotation"]))
            prose.append(" ")
        elif match.group() == "$":
            closing = text.find("$", match.end())
            content = text[match.end() : closing] if closing > 0 else ""
            if closing > 0 and ("\\" in content or "{" in content):
                flush()
                segments.append((LATEX, content))
                index = closing + 1
            else:
                prose.append(" ")
        else:
            flush()
            segments.append((LATEX, match["display"] or match["inline"] or match["bracket"]))
    flush()
    return segments


# ---------------------------------------------------------------------------------------------
# Finding math spans in prose

_TOKEN = re.compile(
    r"""
    (?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)?|\.\d+)
    |(?P<command>\\[A-Za-z]+)
    |(?P<relation><=|>=|!=|==|=|<|>|≈)
    |(?P<operator>\*\*|[-+*/^%])
    |(?P<open>[({\[])
    |(?P<close>[)}\]])
    |(?P<word>[A-Za-z]+(?:_\{?[A-Za-z0-9]+\}?)?)
    |(?P<space>\s+)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_TIMES_X = re.compile(r"(?<=\d)\s*[xX]\s*(?=\d)")


@dataclass
class _Token:
    kind: str
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "word" and (len(match.group()) == 1 or "_" in match.group()):
            kind = "variable"
        elif kind == "command" and match.group() in _LATEX_OPERATOR_COMMANDS:
            kind = "operator"
        elif kind == "command" and match.group() in _LATEX_RELATION_COMMANDS:
            kind = "relation"
        tokens.append(_Token(kind, match.group(), match.start(), match.end()))
    return tokens


_LATEX_OPERATOR_COMMANDS = frozenset({"\\times", "\\cdot", "\\div", "\\pm", "\\mp", "\\ast"})
_LATEX_RELATION_COMMANDS = frozenset(
    {
        "\\le",
        "\\leq",
        "\\ge",
        "\\geq",
        "\\ne",
        "\\neq",
        "\\lt",
        "\\gt",
        "\\leqslant",
        "\\geqslant",
        "\\approx",
    }
)
_MATH_KINDS = frozenset({"number", "command", "relation", "operator", "open", "close", "variable"})
_OPERAND_END = frozenset({"number", "variable", "close"})
_OPERAND_START = frozenset({"number", "variable", "open", "command"})


def _spans(text: str) -> list[tuple[list[_Token], _Token | None, _Token | None]]:
    """Maximal runs of math tokens, each with the break token before and after it."""
    runs: list[tuple[list[_Token], _Token | None, _Token | None]] = []
    current: list[_Token] = []
    before: _Token | None = None
    for token in _tokens(text):
        if token.kind in _MATH_KINDS or (token.kind == "space" and current):
            current.append(token)
            continue
        if token.kind == "space":
            continue
        if current:
            runs.append((_trimmed(current), before, token))
            current = []
        before = token
    if current:
        runs.append((_trimmed(current), before, None))
    return runs


def _trimmed(tokens: list[_Token]) -> list[_Token]:
    while tokens and tokens[-1].kind == "space":
        tokens = tokens[:-1]
    return tokens


def _span_problem(text: str, tokens: list[_Token], before: _Token | None, after: _Token | None) -> str | None:
    """Why this relation-bearing span cannot be read as a whole claim, or None if it can."""
    significant = [token for token in tokens if token.kind != "space"]
    first, last = significant[0], significant[-1]
    if any(token.text in ("≈", "\\approx") for token in significant):
        return "approximate relation is not an exact claim"
    if first.kind == "relation" or (first.kind == "operator" and first.text not in "+-"):
        return f"incomplete expression: starts with {first.text!r}"
    if last.kind in ("relation", "operator") and last.text != "%":
        return f"incomplete expression: ends with {last.text!r}"
    for neighbour in (before, after):
        if neighbour is not None and neighbour.kind == "word" and neighbour.text.lower() in CONNECTIVES:
            return f"arithmetic continues in words ({neighbour.text!r})"
    if before is not None and before.kind == "word" and before.end == tokens[0].start:
        return f"a word touches the expression ({before.text!r})"
    if after is not None and after.kind == "word" and after.start == tokens[-1].end:
        return f"a word touches the expression ({after.text!r})"
    # Notation that is not arithmetic glued to the span: a ratio 3:4, a list 1,2, a factorial 5!.
    if before is not None and before.text in ":,." and before.end == tokens[0].start:
        if before.start > 0 and text[before.start - 1].isalnum():
            return f"{text[before.start - 1 : tokens[0].start + 1]!r} is not arithmetic"
    if after is not None and after.start == tokens[-1].end:
        following = text[after.end : after.end + 1]
        if after.text == "!" or (after.text in ":," and following.isalnum()):
            return f"{text[tokens[-1].start : after.end + 1]!r} is not arithmetic"
    previous: _Token | None = None
    spaced = False
    for token in tokens:
        if token.kind == "space":
            spaced = True
            continue
        if previous is not None and spaced and previous.kind in _OPERAND_END and token.kind in _OPERAND_START:
            return f"two operands side by side ({previous.text!r} {token.text!r})"
        previous, spaced = token, False
    return None


# ---------------------------------------------------------------------------------------------
# Parsing one span


def _is_symbol(expression: Any) -> bool:
    import sympy

    return isinstance(expression, sympy.Symbol)


def _relation(operator: str, left: Any, right: Any) -> Any:
    import sympy

    makers = {
        "=": sympy.Eq,
        "!=": sympy.Ne,
        "<": sympy.Lt,
        "<=": sympy.Le,
        ">": sympy.Gt,
        ">=": sympy.Ge,
    }
    return makers[operator](left, right, evaluate=False)


def _link_claims(sides: list[tuple[str, Any]], operators: list[str]) -> list[Claim]:
    claims = []
    for index, operator in enumerate(operators):
        (left_text, left), (right_text, right) = sides[index], sides[index + 1]
        left_text, right_text = " ".join(left_text.split()), " ".join(right_text.split())
        if operator == "=" and _is_symbol(left):
            kind = ASSIGNMENT
        else:
            kind = EQUALITY if operator == "=" else INEQUALITY
        claims.append(
            Claim(
                relation=_relation(operator, left, right),
                text=f"{left_text} {operator} {right_text}",
                left_text=left_text,
                right_text=right_text,
                operator=operator,
                kind=kind,
            )
        )
    return claims


_PLAIN_RELATION = re.compile(r"(<=|>=|!=|==|=|<|>)")


def _plain_expression(source: str) -> Any:
    """A sympy expression, unevaluated, from plain arithmetic text. No eval: we walk the AST."""
    import sympy

    text = re.sub(r"(\d),(?=\d{3}(?!\d))", r"\1", source)
    text = _TIMES_X.sub(" * ", text)
    text = text.replace("^", "**")
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", text)
    if "%" in text:
        raise _CannotParse("'%' that is not a percentage")
    text = re.sub(r"(\d|\))\s*(?=[A-Za-z(])", r"\1*", text)
    text = re.sub(r"(?<![A-Za-z])([A-Za-z])(?=\()", r"\1*", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise _CannotParse(f"not an arithmetic expression: {source.strip()!r}") from error

    def build(node: ast.AST) -> Any:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
        ):
            return sympy.Integer(node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            literal = ast.get_source_segment(text.strip(), node) or repr(node.value)
            return sympy.Rational(literal)
        if isinstance(node, ast.Name) and re.fullmatch(r"[A-Za-z](?:_[A-Za-z0-9]+)?", node.id):
            return sympy.Symbol(node.id)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return operand
            if operand.is_Number:
                return -operand
            return sympy.Mul(sympy.Integer(-1), operand, evaluate=False)
        if isinstance(node, ast.BinOp):
            left, right = build(node.left), build(node.right)
            if isinstance(node.op, ast.Add):
                return sympy.Add(left, right, evaluate=False)
            if isinstance(node.op, ast.Sub):
                return sympy.Add(left, sympy.Mul(sympy.Integer(-1), right, evaluate=False), evaluate=False)
            if isinstance(node.op, ast.Mult):
                return sympy.Mul(left, right, evaluate=False)
            if isinstance(node.op, ast.Div):
                return sympy.Mul(left, sympy.Pow(right, sympy.Integer(-1), evaluate=False), evaluate=False)
            if isinstance(node.op, ast.Pow):
                return sympy.Pow(left, right, evaluate=False)
        raise _CannotParse(f"unsupported syntax {type(node).__name__} in {source.strip()!r}")

    try:
        return build(tree.body)
    except RecursionError as error:
        raise _CannotParse("expression nested too deeply") from error


def _parse_plain(span: str) -> list[Claim]:
    parts = _PLAIN_RELATION.split(span)
    sides_text, operators = parts[0::2], ["=" if op == "==" else op for op in parts[1::2]]
    for side in sides_text:
        if side.count("(") != side.count(")"):
            raise _CannotParse("relation inside parentheses or unbalanced parentheses")
        if not side.strip():
            raise _CannotParse("empty side of a relation")
    sides = [(side.strip(), _plain_expression(side)) for side in sides_text]
    return _link_claims(sides, operators)


_LATEX_RELATION = re.compile(
    r"(\\leqslant|\\geqslant|\\leq|\\geq|\\neq|\\le|\\ge|\\ne|\\lt|\\gt|<=|>=|!=|=|<|>)(?![A-Za-z])"
)
_LATEX_OPERATOR_NAMES = {
    "\\leqslant": "<=",
    "\\geqslant": ">=",
    "\\leq": "<=",
    "\\geq": ">=",
    "\\neq": "!=",
    "\\le": "<=",
    "\\ge": ">=",
    "\\ne": "!=",
    "\\lt": "<",
    "\\gt": ">",
}
_LATEX_SPACING = re.compile(
    r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\\$"
)


def _split_top_level(text: str, pattern: re.Pattern[str]) -> list[str]:
    """re.split, but only at matches outside braces and parentheses (keeps the separators)."""
    pieces, depth, last = [], 0, 0
    depths = []
    for char in text:
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        depths.append(depth)
    for match in pattern.finditer(text):
        if depths[match.start()] == 0 and (match.start() == 0 or depths[match.start() - 1] == 0):
            pieces.extend([text[last : match.start()], match.group(1) if match.groups() else match.group()])
            last = match.end()
    pieces.append(text[last:])
    return pieces


def _latex_expression(source: str) -> Any:
    import sympy

    try:
        from latex2sympy2_extended import latex2sympy
    except ImportError as error:  # pragma: no cover - math-verify installs it
        raise _CannotParse("LaTeX parser unavailable (install latex2sympy2_extended)") from error
    try:
        expression = latex2sympy(source)
    except Exception as error:  # noqa: BLE001 - the parser raises many types; all mean "cannot read"
        raise _CannotParse(f"LaTeX parser failed on {source.strip()!r}: {type(error).__name__}") from error
    if not isinstance(expression, sympy.Expr):
        raise _CannotParse(f"not an expression: {source.strip()!r}")
    for symbol in expression.free_symbols:
        if len(str(symbol).split("_")[0]) != 1:
            raise _CannotParse(f"word {str(symbol)!r} inside math")
    return expression


def _parse_latex(span: str) -> list[Claim]:
    def replace_text(match: re.Match[str]) -> str:
        words = match.group(1).split()
        if any(word.lower() in CONNECTIVES for word in words):
            raise _CannotParse(f"arithmetic continues in words ({match.group(1).strip()!r})")
        return " "

    text = _TEXT_COMMAND.sub(replace_text, span)
    text = _LATEX_SPACING.sub(" ", _normalize_unicode(text))
    text = re.sub(r"(\d)(?:,|\{,\})(?=\d{3}(?!\d))", r"\1", text)
    if re.search(r"(?<![\\A-Za-z])[A-Za-z]{2,}", text):
        raise _CannotParse("words inside math")
    if "\\approx" in text or "\\equiv" in text or "≈" in text:
        raise _CannotParse("approximate relation is not an exact claim")
    parts = _split_top_level(text, _LATEX_RELATION)
    sides_text = [part.strip() for part in parts[0::2]]
    operators = [_LATEX_OPERATOR_NAMES.get(op, op) for op in parts[1::2]]
    if any(not side for side in sides_text):
        raise _CannotParse("empty side of a relation")
    sides = [(side, _latex_expression(side)) for side in sides_text]
    return _link_claims(sides, operators)


def _parse_span(span: str, latex: bool) -> list[Claim]:
    if len(span) > MAX_SPAN_CHARS:
        raise _CannotParse(f"expression longer than {MAX_SPAN_CHARS} characters")
    return _parse_latex(span) if latex else _parse_plain(span)


def _has_relation(text: str) -> bool:
    return bool(_LATEX_RELATION.search(text) or "≈" in text or "\\approx" in text)


# ---------------------------------------------------------------------------------------------
# Public functions


@functools.lru_cache(maxsize=4096)
def extract_claims(text: str) -> Extraction:
    """Every relation the text asserts, in order, and the relation-like fragments we could not read.

    >>> [c.text for c in extract_claims("Step 2: 21 - 3 = 18\\nThe answer is 18.").claims]
    ['21 - 3 = 18']
    >>> extract_claims("20% of 50 = 10").unparsed[0].reason
    "arithmetic continues in words ('of')"
    """
    claims: list[Claim] = []
    unparsed: list[Unparsed] = []

    def take(fragment: str, latex: bool) -> None:
        try:
            claims.extend(_parse_span(fragment, latex))
        except _CannotParse as error:
            unparsed.append(Unparsed(" ".join(fragment.split()), str(error)))

    for kind, segment in _segments(text):
        if kind == ANNOTATION and _has_relation(segment):
            take(segment, latex=False)
        elif kind == LATEX:
            for piece in re.split(r",\s+|;|\\quad|\\qquad|\\text\{\s*(?:and|so|then)\s*\}", segment):
                if _has_relation(piece):
                    take(piece, latex=True)
        elif kind == PROSE:
            for tokens, before, after in _spans(segment):
                if not any(token.kind == "relation" for token in tokens):
                    continue
                fragment = segment[tokens[0].start : tokens[-1].end].strip()
                problem = _span_problem(segment, tokens, before, after)
                if problem is not None:
                    unparsed.append(Unparsed(" ".join(fragment.split()), problem))
                    continue
                take(fragment, latex=any(token.text[0] in "\\{}" for token in tokens))

    seen: set[str] = set()
    unique = []
    for claim in claims:
        key = f"{claim.relation.func.__name__}|{claim.relation.lhs}|{claim.relation.rhs}"
        if key not in seen:
            seen.add(key)
            unique.append(claim)
    return Extraction(claims=tuple(unique), unparsed=tuple(unparsed))


_QUANTITY = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|(?<![\w.])-?\d+(?:\.\d+)?")


def given_quantities(problem: str) -> tuple[Fraction, ...]:
    """The numbers a problem states, in order, as exact fractions.

    >>> given_quantities("Mia has 14 apples. She gets 7 more. Each costs $1,250.5.")
    (Fraction(14, 1), Fraction(7, 1), Fraction(2501, 2))
    """
    return tuple(Fraction(match.group().replace(",", "")) for match in _QUANTITY.finditer(problem))


def gather_premises(problem: str, previous_steps: Sequence[str]) -> Premises:
    """The problem's numbers and relations, plus every claim of the earlier steps, in order."""
    return Premises(
        quantities=given_quantities(problem),
        given=extract_claims(problem).claims,
        earlier=tuple(claim for step in previous_steps for claim in extract_claims(step).claims),
    )


def premises_of(context: "StepContext") -> Premises:
    return gather_premises(context.problem, context.previous_steps)
