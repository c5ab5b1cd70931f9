"""Claim extraction: the equalities, inequalities, approximations and congruences a step states.

What counts as a relation:
- A math span in prose (`Step 2: 21 - 3 = 18`, `so 14 + 7 = 21 apples`), a LaTeX region
  (`$3 \\cdot 4 = 12$`, `\\(...\\)`, `\\[...\\]`) or bare LaTeX (`\\frac{1}{2} \\times 8 = 4`), and
  GSM8K calculator annotations (`<<48/2=24>>`).
- A chain `a = b = c` gives two claims, `a = b` and `b = c`; `1 < x < 5` gives two as well.
- `a ≈ b` is an approximation (operator `≈`), `a ≡ b (mod m)` a congruence (operator `≡`, the
  modulus on the claim; every link of a chain that names a modulus carries it).
- A link whose left side is a lone symbol (`x = 3*4`) is an assignment.

This module only reads relations and where they stand among the words (`read_items`); what each
relation is doing (asserted, assumed, defined, rejected, asked) is `tasks.verifiers.roles`.

What is not a relation:
- The answer line (`The answer is 18.`, `#### 18`): the final answer is judged against the
  reference by the answer checker, not by step verifiers, so it is removed before extraction.
- Python code (fenced blocks, `>>>` lines): that is the code verifier's input.
- List markers and headers (`1.`, `(b)`, `## Step 3:`): they become markers, never numbers.

A relation we cannot read with certainty (`20% of 50 = 10`, `3 apples * 4 = 12`) is never
guessed at: it is returned as unparsed with the reason, and verifiers turn it into `unknown`.

sympy and the LaTeX parser are imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from tasks.verifiers.units import UNIT_PREFIX, mark_units

if TYPE_CHECKING:
    from tasks.verifiers.base import StepContext

# The longest span we hand to a parser: model output can hold pathological text.
MAX_SPAN_CHARS = 400

# Words that, next to a span, mean the arithmetic continues in words ("20% of 50 = 10").
CONNECTIVES = frozenset(
    """of times plus minus over per by divided multiplied add added subtract subtracted less
    more fewer than half twice double triple thrice percent squared cubed sqrt root log ln sin
    cos tan exp abs max min floor ceil gcd lcm choose""".split()
)

RELATION_OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "≈", "≡")
ASSIGNMENT, EQUALITY, INEQUALITY = "assignment", "equality", "inequality"
APPROXIMATION, CONGRUENCE = "approximation", "congruence"

# Letters read as functions when a parenthesis follows at once: f(3), g(x), h(2). Any other
# letter before a parenthesis multiplies: x(x + 1), p(1 - p).
FUNCTION_LETTERS = frozenset("fgh")


@dataclass(frozen=True)
class Claim:
    """One stated relation. `relation` is an unevaluated sympy relational (`Eq` for ≈ and ≡)."""

    relation: Any  # sympy.core.relational.Relational
    text: str  # "21 - 3 = 18", rebuilt from the two sides' source text
    left_text: str
    right_text: str
    operator: str  # one of RELATION_OPERATORS
    kind: str  # ASSIGNMENT, EQUALITY, INEQUALITY, APPROXIMATION or CONGRUENCE
    modulus: Any = None  # a sympy Integer for a congruence (and the other links of its chain)
    units: frozenset = frozenset()  # names of the unit symbols in it (tasks.verifiers.units)

    @property
    def lhs(self) -> Any:
        return self.relation.lhs

    @property
    def rhs(self) -> Any:
        return self.relation.rhs

    @property
    def free_symbols(self) -> frozenset:
        """The names in the claim (unit symbols are not names)."""
        symbols = self.relation.lhs.free_symbols | self.relation.rhs.free_symbols
        if self.units:
            symbols = {symbol for symbol in symbols if str(symbol) not in self.units}
        return frozenset(symbols)

    @property
    def is_binding(self) -> bool:
        """`name = value`: an assignment (the left side is one symbol)."""
        return self.kind == ASSIGNMENT


@dataclass(frozen=True)
class Unparsed:
    """A fragment that states a relation we could not read, and why."""

    text: str
    reason: str


@dataclass(frozen=True)
class Extraction:
    claims: tuple[Claim, ...] = ()
    unparsed: tuple[Unparsed, ...] = ()


@dataclass(frozen=True)
class Premises:
    """Every relation of the problem and the earlier steps, whatever its role (see roles.py)."""

    quantities: tuple[Fraction, ...]  # numbers given in the problem (not constraints)
    given: tuple[Claim, ...]  # relations stated in the problem: `x = 5`, `2x + 3 = 11`
    earlier: tuple[Claim, ...]  # claims of the earlier steps, in order

    @property
    def relations(self) -> tuple[Claim, ...]:
        return self.given + self.earlier


class _CannotParse(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Reading items: what read_items returns, in reading order

WORD, PUNCT, BREAK, MARKER, FRAGMENT, MATH = "word", "punct", "break", "marker", "fragment", "math"
ITEM_MARKER, CASE_MARKER = "item", "case"


@dataclass(frozen=True)
class Fragment:
    """One relation-bearing piece of math: its chain of claims, or why it could not be read."""

    text: str
    claims: tuple[Claim, ...] = ()
    problem: str | None = None
    annotation: bool = False  # a GSM8K calculator annotation: always a plain computation
    values_follow: bool = False  # "n = 2, 3, 4": more values follow the relation


@dataclass(frozen=True)
class Item:
    kind: str  # WORD, PUNCT, BREAK, MARKER, FRAGMENT or MATH
    text: str  # the word (lower case), the punctuation mark, the marker kind, the math text
    fragment: Fragment | None = None


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
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_UNICODE = {"−": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "≤": "<=", "≥": ">=", "≠": "!=", "⇒": "→"}

# Markers become private-use characters, so no later step can read them as numbers.
_ITEM_CHAR, _CASE_CHAR = "\ue000", "\ue001"
_HEADER = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[:.)]?(?:\*\*)?[ \t]*",
                     re.IGNORECASE | re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:\d{1,2}[.)]|\(?[a-h][.)]|\((?:i{1,3}|iv|v|vi{0,3})\)|[-*•])[ \t]+", re.MULTILINE)
_PART = re.compile(r"(?:(?<=^)|(?<=[.;:]\s)|(?<=\n))\s*\((?:[a-h]|i{1,3}|iv|v)\)\s+", re.MULTILINE)
_CASE = re.compile(
    r"(?:\*\*)?\b(?:sub)?case\s*(?:\d+|[a-h]|[ivx]{1,4})\b(?:\*\*)?\s*(?:[:.)]|\s-)?(?:\*\*)?\s*", re.IGNORECASE
)
_ABBREVIATIONS = ((re.compile(r"\bi\.\s?e\.,?", re.IGNORECASE), " ie "), (re.compile(r"\be\.\s?g\.,?", re.IGNORECASE), " eg "),
                  (re.compile(r"\bvs\.", re.IGNORECASE), " vs "))

PROSE, LATEX, ANNOTATION = "prose", "latex", "annotation"
# "40% of 450" and "3/4 of 120" are products; "of" before anything but a number stays words.
_SHARE_OF = re.compile(r"(\d+(?:\.\d+)?\s*%|\b\d+\s*/\s*\d+)\s+of\s+(?=\$?\d)")


def _normalize_unicode(text: str) -> str:
    for symbol, ascii_form in _UNICODE.items():
        text = text.replace(symbol, ascii_form)
    return text


def _mark(text: str) -> str:
    """Headers dropped; list items, parts and cases replaced by their marker characters."""
    text = _HEADER.sub("", text)
    text = _LIST_ITEM.sub(f" {_ITEM_CHAR} ", text)
    text = _PART.sub(f" {_ITEM_CHAR} ", text)
    text = _CASE.sub(f" {_CASE_CHAR} ", text)
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    return text


def _is_math_region(content: str, following: str) -> bool:
    """Whether `$content$` is math rather than two currency signs (`$5 + $3 = $8`).

    LaTeX (a backslash or a brace) always is; otherwise math has no space at either end and the
    closing sign does not start an amount.
    """
    if "\\" in content or "{" in content:
        return True
    return bool(content.strip()) and content == content.strip() and not following.isdigit() and "\n" not in content


def _segments(text: str) -> list[tuple[str, str]]:
    """The step's text as (kind, text) pieces in reading order: prose, LaTeX regions, annotations.

    Code, the answer line and GSM8K `<<...>>` annotations leave the prose (an annotation becomes
    its own piece). A `$` that does not open math is a currency sign and is dropped:
    `$5 + $3 = $8` reads as `5 + 3 = 8`.
    """
    text = _FENCE.sub("\n", text)
    text = _PROMPT_LINE.sub("", text)
    text = _ANSWER_LINE.sub("", text)
    text = _BOXED.sub(lambda match: match.group(1), text)
    text = _mark(text)
    segments: list[tuple[str, str]] = []
    prose: list[str] = []

    def flush() -> None:
        joined = "".join(prose)
        prose.clear()
        if joined.strip():
            joined = _TEXT_COMMAND.sub(lambda match: f" {match.group(1)} ", joined)
            joined = _SHARE_OF.sub(r"\1 * ", _normalize_unicode(joined))
            segments.append((PROSE, mark_units(_TIMES_X.sub(" * ", joined))))

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
            if closing > 0 and _is_math_region(content, text[closing + 1 : closing + 2]):
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
    (?P<modulus>\(\s*(?:mod|modulo)\s+\d+\s*\)|\\pmod\s*\{?\s*\d+\s*\}?)
    |(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)?|\.\d+)
    |(?P<command>\\[A-Za-z]+)
    |(?P<relation><=|>=|!=|==|=|<|>|≈|≡)
    |(?P<operator>\*\*|[-+*/^%]|\bmod\b)
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
        if kind == "word" and match.group() == "mod":
            kind = "operator"
        elif kind == "word" and (len(match.group()) == 1 or "_" in match.group()):
            kind = "variable"
        elif kind == "command" and match.group() in _LATEX_OPERATOR_COMMANDS:
            kind = "operator"
        elif kind == "command" and match.group() in _LATEX_RELATION_COMMANDS:
            kind = "relation"
        tokens.append(_Token(kind, match.group(), match.start(), match.end()))
    return tokens


_LATEX_OPERATOR_COMMANDS = frozenset({"\\times", "\\cdot", "\\div", "\\pm", "\\mp", "\\ast"})
_LATEX_RELATION_COMMANDS = frozenset(
    {"\\le", "\\leq", "\\ge", "\\geq", "\\ne", "\\neq", "\\lt", "\\gt", "\\leqslant", "\\geqslant", "\\approx", "\\equiv"}
)
_MATH_KINDS = frozenset({"number", "command", "relation", "operator", "open", "close", "variable", "modulus"})
_OPERAND_END = frozenset({"number", "variable", "close"})
_OPERAND_START = frozenset({"number", "variable", "open", "command"})


def _runs(tokens: list[_Token]) -> list[tuple[list[_Token], _Token | None, _Token | None, int, int]]:
    """Maximal runs of math tokens (a line break ends one): tokens, the tokens before and after it,
    and the index range [first, last) of the run in `tokens`."""
    runs = []
    current: list[_Token] = []
    first = 0
    before: _Token | None = None
    for index, token in enumerate(tokens):
        if token.kind in _MATH_KINDS or (token.kind == "space" and current and "\n" not in token.text):
            if not current:
                first = index
            current.append(token)
            continue
        if current:
            trimmed = _trimmed(current)
            runs.append((trimmed, before, token, first, first + len(trimmed)))
            current = []
        if token.kind != "space":
            before = token
    if current:
        trimmed = _trimmed(current)
        runs.append((trimmed, before, None, first, first + len(trimmed)))
    return runs


def _trimmed_start(tokens: list[_Token]) -> list[_Token]:
    while tokens and tokens[0].kind == "space":
        tokens = tokens[1:]
    return tokens


def _trimmed(tokens: list[_Token]) -> list[_Token]:
    while tokens and tokens[-1].kind == "space":
        tokens = tokens[:-1]
    return tokens


def _span_problem(text: str, tokens: list[_Token], before: _Token | None, after: _Token | None) -> str | None:
    """Why this relation-bearing span cannot be read as a whole claim, or None if it can."""
    significant = [token for token in tokens if token.kind != "space"]
    first, last = significant[0], significant[-1]
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
    # Notation that is not arithmetic glued to the span: a ratio 3:4, a list 1,2, a factorial 5!,
    # a time 9:45.
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
        "≈": sympy.Eq,
        "≡": sympy.Eq,
        "!=": sympy.Ne,
        "<": sympy.Lt,
        "<=": sympy.Le,
        ">": sympy.Gt,
        ">=": sympy.Ge,
    }
    return makers[operator](left, right, evaluate=False)


def _kind(operator: str, left: Any) -> str:
    if operator == "≈":
        return APPROXIMATION
    if operator == "≡":
        return CONGRUENCE
    if operator == "=" and _is_symbol(left):
        return ASSIGNMENT
    return EQUALITY if operator == "=" else INEQUALITY


def _without_units(text: str) -> str:
    """`(80 * unit_km / unit_h)` -> `80 km/h`, for evidence."""
    text = re.sub(r"\s*\*\s*" + UNIT_PREFIX + r"([a-z]+)(\*\*\d)?", lambda m: f" {m.group(1)}{'^' + m.group(2)[2:] if m.group(2) else ''}", text)
    text = re.sub(r"\s*/\s*" + UNIT_PREFIX + r"([a-z]+)", r"/\1", text)
    return re.sub(r"\((\S+(?: [a-z/^0-9]+)?)\)", r"\1", text)


def _link_claims(sides: list[tuple[str, Any]], operators: list[str], modulus: Any = None) -> list[Claim]:
    claims = []
    for index, operator in enumerate(operators):
        (left_text, left), (right_text, right) = sides[index], sides[index + 1]
        left_text, right_text = " ".join(left_text.split()), " ".join(right_text.split())
        units = frozenset(
            str(symbol) for symbol in left.free_symbols | right.free_symbols if str(symbol).startswith(UNIT_PREFIX)
        )
        if units:
            left_text, right_text = _without_units(left_text), _without_units(right_text)
        claims.append(
            Claim(
                relation=_relation(operator, left, right),
                text=f"{left_text} {operator} {right_text}",
                left_text=left_text,
                right_text=right_text,
                operator=operator,
                kind=EQUALITY if units and operator == "=" else _kind(operator, left),
                modulus=modulus,
                units=units,
            )
        )
    return claims


_PLAIN_RELATION = re.compile(r"(<=|>=|!=|==|=|<|>|≈|≡)")
_PLAIN_MODULUS = re.compile(r"\(\s*(?:mod|modulo)\s+(\d+)\s*\)\s*$|\\pmod\s*\{?\s*(\d+)\s*\}?\s*$")
_PLAIN_NAME = re.compile(rf"[A-Za-z](?:_[A-Za-z0-9]+)?|{UNIT_PREFIX}[a-z]+")


def _plain_expression(source: str) -> Any:
    """A sympy expression, unevaluated, from plain arithmetic text. No eval: we walk the AST."""
    import sympy

    text = re.sub(r"(\d),(?=\d{3}(?!\d))", r"\1", source)
    text = _TIMES_X.sub(" * ", text)
    text = text.replace("^", "**")
    text = re.sub(r"\bmod\b", "@", text)
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", text)
    if "%" in text:
        raise _CannotParse("'%' that is not a percentage")
    text = re.sub(r"(\d|\))\s*(?=[A-Za-z(])", r"\1*", text)
    text = re.sub(r"(?<![A-Za-z_])([A-Za-z])(?=\()", lambda m: m.group(1) if m.group(1) in FUNCTION_LETTERS else f"{m.group(1)}*", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise _CannotParse(f"not an arithmetic expression: {source.strip()!r}") from error

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
            return sympy.Integer(node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            literal = ast.get_source_segment(text.strip(), node) or repr(node.value)
            return sympy.Rational(literal)
        if isinstance(node, ast.Name) and _PLAIN_NAME.fullmatch(node.id):
            return sympy.Symbol(node.id)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FUNCTION_LETTERS
            and node.args
            and not node.keywords
        ):
            return sympy.Function(node.func.id)(*[build(argument) for argument in node.args])
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
            if isinstance(node.op, ast.MatMult):
                return sympy.Mod(left, right, evaluate=False)
        raise _CannotParse(f"unsupported syntax {type(node).__name__} in {source.strip()!r}")

    try:
        return build(tree.body)
    except RecursionError as error:
        raise _CannotParse("expression nested too deeply") from error


def _modulus_suffix(text: str) -> tuple[str, Any]:
    """The text without a trailing `(mod m)` / `\\pmod{m}`, and m as a sympy Integer (or None)."""
    import sympy

    match = _PLAIN_MODULUS.search(text)
    if match is None:
        return text, None
    modulus = int(match.group(1) or match.group(2))
    if modulus < 1:
        raise _CannotParse(f"modulus {modulus} is not positive")
    return text[: match.start()], sympy.Integer(modulus)


def _parse_plain(span: str) -> list[Claim]:
    span, modulus = _modulus_suffix(span)
    parts = _PLAIN_RELATION.split(span)
    sides_text, operators = parts[0::2], ["=" if op == "==" else op for op in parts[1::2]]
    for side in sides_text:
        if side.count("(") != side.count(")"):
            raise _CannotParse("relation inside parentheses or unbalanced parentheses")
        if not side.strip():
            raise _CannotParse("empty side of a relation")
    sides = [(side.strip(), _plain_expression(side)) for side in sides_text]
    return _link_claims(sides, operators, modulus)


_LATEX_RELATION = re.compile(
    r"(\\leqslant|\\geqslant|\\leq|\\geq|\\neq|\\le|\\ge|\\ne|\\lt|\\gt|\\approx|\\equiv|<=|>=|!=|=|<|>|≈|≡)(?![A-Za-z])"
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
    "\\approx": "≈",
    "\\equiv": "≡",
}
_LATEX_SPACING = re.compile(
    r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\[,;:! ]|\\quad|\\qquad|\\displaystyle|\\\$|~"
)
_LATEX_MODULUS = re.compile(
    r"\\pmod\s*\{\s*(\d+)\s*\}|\\pmod\s*(\d+)|\(\s*\\(?:bmod|mod)\s*\{?\s*(\d+)\s*\}?\s*\)|\\mod\s*\{?\s*(\d+)\s*\}?\s*$"
    r"|\(\s*(?:\\text\{\s*)?mod(?:ulo)?(?:\s*\})?\s*(\d+)\s*\)"
)
_LATEX_NEGATED = re.compile(r"\\not\s*(?:\\equiv|=|<|>|\\le|\\ge)|\\nmid|\\not\\mid|\\nless|\\ngtr")
# Two or three letters in math are a product of names (mn, abc) unless they spell a word or unit.
_WORDS_IN_MATH = frozenset(
    """and or is if so the for are but not all any cm km mm kg mg ml min sec hr hrs mph ft lb lbs
    oz yd mi deg rad per mod log ln sin cos tan exp max min gcd lcm lim det cot sec csc cm""".split()
)
_SUBSCRIPT_BRACES = re.compile(r"_\{([A-Za-z0-9]+)\}")


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


def canonical_symbols(expression: Any) -> Any:
    """The expression with subscripts written one way: `a_{20}` and `a_20` are one symbol."""
    import sympy

    renames = {}
    for symbol in expression.free_symbols:
        name = _SUBSCRIPT_BRACES.sub(r"_\1", str(symbol))
        if name != str(symbol):
            renames[symbol] = sympy.Symbol(name)
    return expression.xreplace(renames) if renames else expression


_BRACED_COMMANDS = {"\\frac": 2, "\\dfrac": 2, "\\tfrac": 2, "\\sqrt": 1}
_SIMPLE_COMMANDS = {"\\cdot": "*", "\\times": "*", "\\div": "/", "\\%": "%", "\\left": "", "\\right": ""}
_COMMAND = re.compile(r"\\[A-Za-z]+|\\%")


def _braced(text: str, start: int) -> tuple[str, int]:
    """The content of the brace group opening at `start` and the index after it."""
    if start >= len(text) or text[start] != "{":
        raise _CannotParse("expected a brace group")
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index], index + 1
    raise _CannotParse("unbalanced braces")


def latex_to_plain(text: str) -> str:
    """Common LaTeX arithmetic as plain text, or _CannotParse for anything else.

    >>> latex_to_plain(r"\\frac{3}{4} \\cdot 2^{10} + 4\\frac{1}{2} - \\sqrt{16}")
    '((3)/(4)) * 2**(10) + (4+((1)/(2))) - ((16)**(1/2))'
    """
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            match = _COMMAND.match(text, index)
            command = match.group() if match else "\\"
            index += len(command)
            if command in _SIMPLE_COMMANDS:
                out.append(f" {_SIMPLE_COMMANDS[command]} " if _SIMPLE_COMMANDS[command] in "*/" else _SIMPLE_COMMANDS[command])
                continue
            if command not in _BRACED_COMMANDS:
                raise _CannotParse(f"LaTeX command {command} is left to the LaTeX parser")
            if command == "\\sqrt":
                while index < len(text) and text[index] == " ":
                    index += 1
                if index < len(text) and text[index] == "[":
                    raise _CannotParse("an n-th root is left to the LaTeX parser")
                body, index = _braced(text, index)
                out.append(f"(({latex_to_plain(body)})**(1/2))")
                continue
            numerator, index = _braced(text, index)
            denominator, index = _braced(text, index)
            fraction = f"(({latex_to_plain(numerator)})/({latex_to_plain(denominator)}))"
            whole = re.search(r"(?<![\d.*/^])(\d+)\s*$", "".join(out))
            if whole and re.fullmatch(r"\d+", numerator.strip()) and re.fullmatch(r"\d+", denominator.strip()):
                joined = "".join(out)
                out = [joined[: whole.start(1)], f"({whole.group(1)}+{fraction})"]  # 4\frac{1}{2}: a mixed number
            else:
                out.append(fraction)
            continue
        if char == "^":
            index += 1
            while index < len(text) and text[index] == " ":
                index += 1
            if index < len(text) and text[index] == "{":
                body, index = _braced(text, index)
                out.append(f"**({latex_to_plain(body)})")
            else:
                out.append("**")
            continue
        if char == "_":
            if index + 1 < len(text) and text[index + 1] == "{":
                body, after = _braced(text, index + 1)
                if not re.fullmatch(r"[A-Za-z0-9]+", body):
                    raise _CannotParse("a compound subscript is left to the LaTeX parser")
                out.append(f"_{body}")
                index = after
                continue
        if char in "{}":
            out.append("(" if char == "{" else ")")
            index += 1
            continue
        out.append(char)
        index += 1
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _latex_expression(source: str) -> Any:
    import sympy

    try:
        return canonical_symbols(_plain_expression(latex_to_plain(source)))
    except _CannotParse:
        pass

    try:
        from latex2sympy2_extended import latex2sympy
        from latex2sympy2_extended.latex2sympy2 import ConversionConfig
    except ImportError as error:  # pragma: no cover - math-verify installs it
        raise _CannotParse("LaTeX parser unavailable (install latex2sympy2_extended)") from error
    try:
        expression = latex2sympy(source, conversion_config=_latex_conversion(ConversionConfig))
    except Exception as error:  # noqa: BLE001 - the parser raises many types; all mean "cannot read"
        raise _CannotParse(f"LaTeX parser failed on {source.strip()!r}: {type(error).__name__}") from error
    if not isinstance(expression, sympy.Expr):
        raise _CannotParse(f"not an expression: {source.strip()!r}")
    for symbol in expression.free_symbols:
        stem = str(symbol).split("_")[0]
        if len(stem) != 1 and stem not in _GREEK:
            raise _CannotParse(f"word {str(symbol)!r} inside math")
    return canonical_symbols(expression)


_GREEK = frozenset(
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi rho sigma tau phi chi psi omega".split()
)


@functools.lru_cache(maxsize=1)
def _latex_conversion(config_class: Any) -> Any:
    # Upper and lower case are different names (A is not a); 4\frac{1}{2} is four and a half.
    return config_class(lowercase_symbols=False, interpret_as_mixed_fractions=True)


def _latex_modulus(text: str) -> tuple[str, Any]:
    import sympy

    found = list(_LATEX_MODULUS.finditer(text))
    if not found:
        return text, None
    values = {int(next(group for group in match.groups() if group)) for match in found}
    if len(values) != 1:
        raise _CannotParse("two moduli in one relation")
    modulus = values.pop()
    if modulus < 1:
        raise _CannotParse(f"modulus {modulus} is not positive")
    return _LATEX_MODULUS.sub(" ", text), sympy.Integer(modulus)


def _parse_latex(span: str) -> list[Claim]:
    def replace_text(match: re.Match[str]) -> str:
        words = match.group(1).split()
        if any(word.lower() in CONNECTIVES for word in words):
            raise _CannotParse(f"arithmetic continues in words ({match.group(1).strip()!r})")
        if any(word.lower() in ("mod", "modulo") for word in words):
            return match.group(0)
        return " "

    if _LATEX_NEGATED.search(span):
        raise _CannotParse("negated relation (not ≡, ∤) is not read")
    text, modulus = _latex_modulus(span)
    text = _TEXT_COMMAND.sub(replace_text, text)
    text, more_modulus = _latex_modulus(text)
    modulus = modulus if modulus is not None else more_modulus
    text = _LATEX_SPACING.sub(" ", _normalize_unicode(text))
    text = re.sub(r"(\d)(?:,|\{,\})(?=\d{3}(?!\d))", r"\1", text)
    text = re.sub(r"\^\s*\\circ|\^\s*\{\\circ\}|°", " ", text)
    if re.search(r"\\(?:bmod|mod)(?![A-Za-z])", text):
        raise _CannotParse("'mod' as an operator inside LaTeX is not read")
    for run in re.findall(r"(?<![\\A-Za-z])[A-Za-z]{2,}", text):
        if len(run) > 3 or run.lower() in _WORDS_IN_MATH:
            raise _CannotParse(f"word {run!r} inside math")
    parts = _split_top_level(text, _LATEX_RELATION)
    sides_text = [part.strip() for part in parts[0::2]]
    operators = [_LATEX_OPERATOR_NAMES.get(op, op) for op in parts[1::2]]
    if any(not side for side in sides_text):
        raise _CannotParse("empty side of a relation")
    sides = [(side, _latex_expression(side)) for side in sides_text]
    return _link_claims(sides, operators, modulus)


def _parse_span(span: str, latex: bool) -> list[Claim]:
    if len(span) > MAX_SPAN_CHARS:
        raise _CannotParse(f"expression longer than {MAX_SPAN_CHARS} characters")
    return _parse_latex(span) if latex else _parse_plain(span)


def _has_relation(text: str) -> bool:
    return bool(_LATEX_RELATION.search(text))


def _math_fragment(text: str) -> Fragment:
    """A piece of delimited math: plain arithmetic reads fastest, LaTeX's parser takes the rest."""
    if not re.search(r"[\\{}!]", text):
        plain = _fragment(text, latex=False)
        if plain.problem is None:
            return plain
    return _fragment(text, latex=True)


def _fragment(text: str, latex: bool, annotation: bool = False, values_follow: bool = False) -> Fragment:
    fragment_text = " ".join(text.split())
    try:
        return Fragment(fragment_text, tuple(_parse_span(text, latex)), None, annotation, values_follow)
    except _CannotParse as error:
        return Fragment(fragment_text, (), str(error), annotation, values_follow)


# ---------------------------------------------------------------------------------------------
# Reading order: words, punctuation, markers and math


_LATEX_SEPARATOR = re.compile(
    r"(,\s+|;\s*|\\quad|\\qquad|\\\\|\\(?:implies|Rightarrow|Longrightarrow|iff|Leftrightarrow)(?![A-Za-z])"
    r"|\\text\{\s*(?:and|or|so|then|hence|thus|i\.e\.|where|with|for)\s*,?\s*\})"
)
_ARROW_WORDS = {"\\implies": "so", "\\Rightarrow": "so", "\\Longrightarrow": "so", "\\iff": "ie", "\\Leftrightarrow": "ie"}
_NUMBER_LIKE = re.compile(r"^\s*[-+]?\s*(?:\d[\d,]*(?:\.\d+)?|\\frac\{[^{}]*\}\{[^{}]*\})\s*$")


_ALIGNED = re.compile(r"\\(?:begin|end)\{(?:aligned|align\*?|gathered|split|cases|array)\}(?:\{[^{}]*\})?")
_CONTINUED_LINE = re.compile(r"\\\\\s*(?=[=<>]|\\(?:le|ge|leq|geq|approx|equiv|neq|lt|gt)(?![A-Za-z]))")


def _latex_items(content: str) -> list[Item]:
    """A LaTeX region as items: each relation-bearing piece a fragment, separators as words.

    An aligned chain (`a &= b \\\\ &= c`) reads as one chain.
    """
    items: list[Item] = []
    content = _CONTINUED_LINE.sub(" ", _ALIGNED.sub(" ", content).replace("&", " "))
    pieces = _split_top_level(content, _LATEX_SEPARATOR)
    texts, separators = pieces[0::2], pieces[1::2] + [""]
    for index, (piece, separator) in enumerate(zip(texts, separators, strict=True)):
        stripped = piece.strip()
        trailing = ""
        while stripped and stripped[-1] in ".:":
            trailing = stripped[-1] + trailing
            stripped = stripped[:-1].rstrip()
        if stripped:
            if _has_relation(stripped):
                items.append(Item(FRAGMENT, stripped, _math_fragment(stripped)))
            else:
                items.append(Item(MATH, stripped))
        items.extend(Item(PUNCT, mark) for mark in trailing)
        word = separator.strip()
        if word in _ARROW_WORDS:
            items.append(Item(WORD, _ARROW_WORDS[word]))
        elif word.startswith("\\text"):
            items.append(Item(WORD, re.sub(r"[^a-z. ]", "", word[5:].lower()).strip().replace("i.e.", "ie")))
        elif word in (",", ";"):
            items.append(Item(PUNCT, word))
        elif word:
            items.append(Item(PUNCT, ","))
    return items


def _prose_items(text: str) -> list[Item]:
    tokens = _tokens(text)
    runs = {first: (run, before, after, end) for run, before, after, first, end in _runs(tokens)}
    items: list[Item] = []
    index = 0
    while index < len(tokens):
        if index in runs:
            run, before, after, end = runs[index]
            if run[0].kind == "relation" and before is not None and before.kind == "word" and before.text.lower() not in CONNECTIVES:
                # "Distance = 18 × 2 = 36": a label before the first relation names the quantity.
                rest = _trimmed_start(run[1:])
                if rest and any(token.kind == "relation" for token in rest):
                    run = rest
            span = text[run[0].start : run[-1].end]
            if any(token.kind == "relation" for token in run):
                problem = _span_problem(text, run, before, after)
                if problem is not None:
                    items.append(Item(FRAGMENT, span, Fragment(" ".join(span.split()), (), problem)))
                else:
                    latex = any(token.text[0] in "\\{}" for token in run)
                    items.append(Item(FRAGMENT, span, _fragment(span, latex)))
            else:
                items.append(Item(MATH, span))
            index = end
            continue
        token = tokens[index]
        index += 1
        if token.kind == "space":
            if token.text.count("\n") >= 2:
                items.append(Item(BREAK, "\n\n"))
        elif token.kind == "word":
            items.append(Item(WORD, token.text.lower()))
        elif token.text == _ITEM_CHAR:
            items.append(Item(MARKER, ITEM_MARKER))
        elif token.text == _CASE_CHAR:
            items.append(Item(MARKER, CASE_MARKER))
        elif token.text in ".,;:?!→'":
            items.append(Item(PUNCT, token.text))
    return items


@functools.lru_cache(maxsize=4096)
def read_items(text: str) -> tuple[Item, ...]:
    """The step as items in reading order: words, punctuation, markers, math and relation fragments.

    >>> [item.kind for item in read_items("If $n = 2$, then 3 + 4 = 7.")]
    ['word', 'fragment', 'punct', 'word', 'fragment', 'punct']
    """
    items: list[Item] = []
    for kind, segment in _segments(text):
        if kind == ANNOTATION:
            if _has_relation(segment):
                fragment = _fragment(segment, latex=False, annotation=True)
                items.append(Item(FRAGMENT, segment, fragment))
        elif kind == LATEX:
            items.extend(_latex_items(segment))
        else:
            items.extend(_prose_items(segment))
    return tuple(_mark_value_lists(items))


def _mark_value_lists(items: list[Item]) -> list[Item]:
    """`n = 2, 3, 4`: a relation followed by a comma and a bare value offers a list of values."""
    marked = list(items)
    for index, item in enumerate(items):
        if item.fragment is None or index + 2 >= len(items):
            continue
        following, value = items[index + 1], items[index + 2]
        if following.kind == PUNCT and following.text == "," and value.kind == MATH and _NUMBER_LIKE.match(value.text):
            marked[index] = replace(item, fragment=replace(item.fragment, values_follow=True))
    return marked


def with_modulus(claim: Claim, modulus: Any) -> Claim:
    return replace(claim, modulus=modulus)


# ---------------------------------------------------------------------------------------------
# Public functions


def _claim_key(claim: Claim) -> str:
    return f"{claim.operator}|{claim.relation.func.__name__}|{claim.relation.lhs}|{claim.relation.rhs}|{claim.modulus}"


@functools.lru_cache(maxsize=4096)
def extract_claims(text: str) -> Extraction:
    """Every relation the text states, in order, and the relation-like fragments we could not read.

    Whatever its role: `tasks.verifiers.roles.read_step` says which of them are asserted.

    >>> [c.text for c in extract_claims("Step 2: 21 - 3 = 18\\nThe answer is 18.").claims]
    ['21 - 3 = 18']
    >>> extract_claims("half of 50 = 25").unparsed[0].reason
    "arithmetic continues in words ('of')"
    """
    claims: list[Claim] = []
    unparsed: list[Unparsed] = []
    for item in read_items(text):
        if item.fragment is None:
            continue
        if item.fragment.problem is not None:
            unparsed.append(Unparsed(item.fragment.text, item.fragment.problem))
        claims.extend(item.fragment.claims)
    seen: set[str] = set()
    unique = []
    for claim in claims:
        key = _claim_key(claim)
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
