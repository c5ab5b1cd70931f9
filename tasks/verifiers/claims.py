"""Claims: the relations a piece of math states, parsed into sympy without evaluating them.

`parse_span` reads one span of plain arithmetic (`21 - 3 = 18`, `1024 mod 7 = 2`) or LaTeX
(`\\frac{1}{2} \\times 8 = 4`):
- A chain `a = b = c` gives two claims, `a = b` and `b = c`; `1 < x < 5` gives two as well.
- `a ≈ b` is an approximation (operator `≈`), `a ≡ b (mod m)` a congruence (operator `≡`, the
  modulus on the claim; every link of a chain that names a modulus carries it).
- A link whose left side is a lone symbol (`x = 3*4`) is an assignment.
- Units inside prose arithmetic are unit symbols (`tasks.verifiers.units`).

Anything it cannot read with certainty raises CannotParse with the reason; it never guesses.
Where the spans are in a step's text, and which words stand around them, is
`tasks.verifiers.reading`; what each relation is doing there is `tasks.verifiers.roles`.
Common LaTeX (fractions, powers, products, roots) is translated and parsed like plain text; the
rest goes to the LaTeX parser of math-verify, imported lazily like sympy.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from tasks.verifiers.units import UNIT_PREFIX, is_unit, unit_factor

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


class CannotParse(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Shared with the reader

TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_UNICODE = {"−": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "≤": "<=", "≥": ">=", "≠": "!=", "⇒": "→"}
TIMES_X = re.compile(r"(?<=\d)\s*[xX]\s*(?=\d)")


def normalize_unicode(text: str) -> str:
    for symbol, ascii_form in _UNICODE.items():
        text = text.replace(symbol, ascii_form)
    return text


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


_BARE_PERCENT = re.compile(r"^\s*-?\s*\d+(?:\.\d+)?\s*\\?%\s*$")


def _percent_points(left_text: str, left: Any, right_text: str, right: Any, operator: str) -> tuple[Any, Any]:
    """The two sides of one link, with a percent on one side only read as the text means it.

    `0.15 = 15%` reads the percent as a fraction; `80 - 66 = 14%` (a battery at 80% loses 66%)
    as percentage points, the unit of the other side. When the fraction reading is false and the
    points reading true, the points reading is taken; otherwise the fraction reading stands.
    """
    import sympy

    left_percent, right_percent = "%" in left_text, "%" in right_text
    if operator != "=" or left_percent == right_percent or left.free_symbols or right.free_symbols:
        return left, right
    if not _BARE_PERCENT.match(left_text if left_percent else right_text):
        return left, right  # `40% of 450 = 180`: a share of something, never points
    try:
        if sympy.simplify(left - right) == 0:
            return left, right
        points = (sympy.simplify(left * 100), right) if left_percent else (left, sympy.simplify(right * 100))
        return points if sympy.simplify(points[0] - points[1]) == 0 else (left, right)
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return left, right


def _link_claims(sides: list[tuple[str, Any]], operators: list[str], modulus: Any = None) -> list[Claim]:
    claims = []
    for index, operator in enumerate(operators):
        (left_text, left), (right_text, right) = sides[index], sides[index + 1]
        if modulus is None:
            left, right = _percent_points(left_text, left, right_text, right, operator)
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
# Two or three capitals are one name, a segment or a figure (AB, ABC), never a product.
_PLAIN_NAME = re.compile(rf"[A-Za-z](?:_[A-Za-z0-9]+)?|[A-Z]{{2,3}}|{UNIT_PREFIX}[a-z]+")
_SEGMENT = re.compile(r"(?<![\\A-Za-z])[A-Z]{2,3}(?![A-Za-z])")


_BASE_NUMERAL = re.compile(r"(?<![\w.])(\d+)_\{?(\d+)\}?")


def base_numerals(text: str) -> str:
    """Numerals written in a base (`1011_2`, `2023_{10}`) as their values in base ten.

    A subscript on a number that is no numeral of its base is not read.

    >>> base_numerals("1011_2 + 5620_7 = 2023_{10} + 11")
    '11 + 2023 = 2023 + 11'
    """
    def value(match: re.Match[str]) -> str:
        digits, base = match.group(1), int(match.group(2))
        if not 2 <= base <= 10 or any(int(digit) >= base for digit in digits):
            raise CannotParse(f"{match.group()!r} is not a numeral in base {base}")
        return str(int(digits, base))

    return _BASE_NUMERAL.sub(value, text)


def _plain_expression(source: str) -> Any:
    """A sympy expression, unevaluated, from plain arithmetic text. No eval: we walk the AST."""
    import sympy

    text = re.sub(r"(\d),(?=\d{3}(?!\d))", r"\1", base_numerals(source))
    if re.search(r"\d_", text):
        raise CannotParse(f"a subscript on a number: {source.strip()!r}")  # Python would read 1_0 as 10
    text = TIMES_X.sub(" * ", text)
    text = text.replace("^", "**")
    text = re.sub(r"\bmod\b", "@", text)
    if re.search(r"(?:^|[^%\s])\s*[-+]\s*\d+(?:\.\d+)?\s*%", text):
        # `50 - 20% = 40` means 20% of 50: a share of what is not written
        raise CannotParse(f"a percentage added to a number: {source.strip()!r}")
    text = re.sub(r"(\d+(?:\.\d+)?)\s*%", r"(\1/100)", text)
    if "%" in text:
        raise CannotParse("'%' that is not a percentage")
    text = re.sub(r"(\d|\))\s*(?=[A-Za-z(])", r"\1*", text)
    text = re.sub(r"(?<![A-Za-z_])([A-Za-z])(?=\()", lambda m: m.group(1) if m.group(1) in FUNCTION_LETTERS else f"{m.group(1)}*", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise CannotParse(f"not an arithmetic expression: {source.strip()!r}") from error

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
            and node.func.id == "binomial"
            and len(node.args) == 2
            and not node.keywords
        ):
            return sympy.binomial(*[build(argument) for argument in node.args], evaluate=False)
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
        raise CannotParse(f"unsupported syntax {type(node).__name__} in {source.strip()!r}")

    try:
        return build(tree.body)
    except RecursionError as error:
        raise CannotParse("expression nested too deeply") from error


def _modulus_suffix(text: str) -> tuple[str, Any]:
    """The text without a trailing `(mod m)` / `\\pmod{m}`, and m as a sympy Integer (or None)."""
    import sympy

    match = _PLAIN_MODULUS.search(text)
    if match is None:
        return text, None
    modulus = int(match.group(1) or match.group(2))
    if modulus < 1:
        raise CannotParse(f"modulus {modulus} is not positive")
    return text[: match.start()], sympy.Integer(modulus)


_TRUNCATED = re.compile(r"^(.*\d\.\d+)\s*(?:\\ldots|\\dots|\\cdots|\.\.\.|…)$", re.DOTALL)


def _truncated_decimals(sides: list[str], operators: list[str]) -> tuple[list[str], list[str]]:
    """`4/11 = 0.3636...`: a decimal that trails off is an approximation of the sides beside it."""
    sides, operators = list(sides), list(operators)
    for index, side in enumerate(sides):
        match = _TRUNCATED.match(side.strip())
        if match is None:
            continue
        sides[index] = match.group(1)
        for beside in (index - 1, index):
            if 0 <= beside < len(operators) and operators[beside] == "=":
                operators[beside] = "≈"
    return sides, operators


def _parse_plain(span: str) -> list[Claim]:
    span, modulus = _modulus_suffix(span)
    parts = _PLAIN_RELATION.split(span)
    sides_text, operators = parts[0::2], ["=" if op == "==" else op for op in parts[1::2]]
    sides_text, operators = _truncated_decimals(sides_text, operators)
    for side in sides_text:
        if side.count("(") != side.count(")"):
            raise CannotParse("relation inside parentheses or unbalanced parentheses")
        if not side.strip():
            raise CannotParse("empty side of a relation")
    sides = [(side.strip(), _plain_expression(side)) for side in sides_text]
    trailing = re.match(r"^(.*?)\s*\bmod\s+(\d+)\s*$", sides[-1][0])
    if modulus is None and trailing and len(sides) > 1 and "mod" not in sides[-2][0]:
        # "1024 = 2 mod 7": the chain is read modulo 7, not as 1024 = (2 mod 7).
        import sympy

        modulus = sympy.Integer(int(trailing.group(2)))
        if modulus < 1:
            raise CannotParse(f"modulus {modulus} is not positive")
        sides[-1] = (trailing.group(1), _plain_expression(trailing.group(1)))
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


def split_top_level(text: str, pattern: re.Pattern[str]) -> list[str]:
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


_BRACED_COMMANDS = {"\\frac": 2, "\\dfrac": 2, "\\tfrac": 2, "\\sqrt": 1, "\\binom": 2, "\\dbinom": 2, "\\tbinom": 2}
_SIMPLE_COMMANDS = {"\\cdot": "*", "\\times": "*", "\\div": "/", "\\%": "%", "\\left": "", "\\right": ""}
_COMMAND = re.compile(r"\\[A-Za-z]+|\\%")


def _braced(text: str, start: int) -> tuple[str, int]:
    """The content of the brace group opening at `start` and the index after it."""
    if start >= len(text) or text[start] != "{":
        raise CannotParse("expected a brace group")
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index], index + 1
    raise CannotParse("unbalanced braces")


def _argument(text: str, start: int) -> tuple[str, int]:
    """A command's argument at `start`: a brace group, or one digit or letter (`\\frac34`)."""
    while start < len(text) and text[start] == " ":
        start += 1
    if start < len(text) and text[start].isalnum():
        return text[start], start + 1
    return _braced(text, start)


def latex_to_plain(text: str) -> str:
    """Common LaTeX arithmetic as plain text, or CannotParse for anything else.

    >>> latex_to_plain(r"\\frac{3}{4} \\cdot 2^{10} + 4\\frac{1}{2} - \\sqrt{16}")
    '((3)/(4)) * 2**(10) + (4+((1)/(2))) - ((16)**(1/2))'
    >>> latex_to_plain(r"2\\binom{4}{2} + \\frac34")
    '2binomial((4),(2)) + ((3)/(4))'
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
                raise CannotParse(f"LaTeX command {command} is left to the LaTeX parser")
            if command == "\\sqrt":
                while index < len(text) and text[index] == " ":
                    index += 1
                if index < len(text) and text[index] == "[":
                    raise CannotParse("an n-th root is left to the LaTeX parser")
                body, index = _braced(text, index)
                out.append(f"(({latex_to_plain(body)})**(1/2))")
                continue
            if command.endswith("binom"):
                top, index = _argument(text, index)
                bottom, index = _argument(text, index)
                out.append(f"binomial(({latex_to_plain(top)}),({latex_to_plain(bottom)}))")
                continue
            numerator, index = _argument(text, index)
            denominator, index = _argument(text, index)
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
                    raise CannotParse("a compound subscript is left to the LaTeX parser")
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


_VECTOR = re.compile(r"\\(?:mathbf|vec|overrightarrow|overleftrightarrow|boldsymbol|bm|hat)(?![A-Za-z])")
# Forms the LaTeX parser reads wrongly (seen): a function's bare argument swallows what follows it
# (`\log_2 8 \cdot 3` read as log_2 24, `\sin x \cos x` as sin(x cos x)), and a number or group
# before `\binom` is read as a mixed number (`2\binom{4}{2}` read as 2 + 6), and so is a number
# before a bracketed number (`2(5)` and `(2)(5)` read as 7, where a model writes 2 times 5).
_BARE_ARGUMENT = re.compile(
    r"\\(?:log|ln|lg|exp|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan)(?![A-Za-z])"
    r"(?:_\{[^{}]*\}|_[A-Za-z0-9])?(?:\^\{[^{}]*\}|\^[A-Za-z0-9])?\s*"
    r"(?=[A-Za-z0-9.])[A-Za-z0-9.]+(?:\^\{[^{}]*\}|\^[A-Za-z0-9])?\s*(?P<next>.?)"
)
_NUMBER_BEFORE_BINOMIAL = re.compile(r"[\d})]\s*\\[dt]?binom(?![A-Za-z])")
_NUMBER_BEFORE_BRACKETED_NUMBER = re.compile(
    r"(?:(?<![A-Za-z_])\d|[)\]])\s*(?:\\left\s*)?[(\[]\s*\d+(?:\.\d+)?\s*(?:\\right\s*)?[)\]]"
)


def _misread_by_parser(source: str) -> str | None:
    """The piece of `source` the LaTeX parser would read wrongly, or None."""
    for match in _BARE_ARGUMENT.finditer(source):
        if match.group("next") not in ("", "+", "-", ")", "]", "}"):
            return match.group()
    match = _NUMBER_BEFORE_BINOMIAL.search(source) or _NUMBER_BEFORE_BRACKETED_NUMBER.search(source)
    return match.group() if match else None


def _latex_expression(source: str) -> Any:
    import sympy

    try:
        return canonical_symbols(_plain_expression(latex_to_plain(source)))
    except CannotParse:
        pass

    if UNIT_PREFIX in source:
        raise CannotParse("units in LaTeX the LaTeX parser cannot take")
    if _SEGMENT.search(source):
        raise CannotParse(f"segment name {_SEGMENT.search(source).group()!r}: the LaTeX parser reads it as a product")
    misread = _misread_by_parser(source)
    if misread is not None:
        raise CannotParse(f"{misread.strip()!r}: the LaTeX parser misreads this form")
    try:
        from latex2sympy2_extended import latex2sympy
        from latex2sympy2_extended.latex2sympy2 import ConversionConfig
    except ImportError as error:  # pragma: no cover - math-verify installs it
        raise CannotParse("LaTeX parser unavailable (install latex2sympy2_extended)") from error
    try:
        expression = latex2sympy(source, conversion_config=_latex_conversion(ConversionConfig))
    except Exception as error:  # noqa: BLE001 - the parser raises many types; all mean "cannot read"
        raise CannotParse(f"LaTeX parser failed on {source.strip()!r}: {type(error).__name__}") from error
    if not isinstance(expression, sympy.Expr):
        raise CannotParse(f"not an expression: {source.strip()!r}")
    for symbol in expression.free_symbols:
        stem = str(symbol).split("_")[0]
        if len(stem) != 1 and stem not in GREEK:
            raise CannotParse(f"word {str(symbol)!r} inside math")
    return canonical_symbols(expression)


GREEK = frozenset(
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
        raise CannotParse("two moduli in one relation")
    modulus = values.pop()
    if modulus < 1:
        raise CannotParse(f"modulus {modulus} is not positive")
    return _LATEX_MODULUS.sub(" ", text), sympy.Integer(modulus)


def _unit_words(content: str) -> list[str] | None:
    """The words of a `\\text{...}` when every one is a unit (`hours`, `km/h`), else None."""
    words = content.replace("\\", " ").split()
    return words if words and all(is_unit(word) for word in words) else None


def _text_units(text: str) -> str:
    """`3.5 \\text{ hours} = 210 \\text{ minutes}`: units written as text become unit symbols, as in
    prose (tasks.verifiers.units), when one stands before the first relation; after the relation
    only (`12 \\times 4 = 48 \\text{ apples}`) they are dropped, as a label of the result."""
    first_relation = _LATEX_RELATION.search(text)
    if first_relation is None:
        return text
    def is_unit_text(match: re.Match[str]) -> bool:
        # A word is a unit only right after a number or a group: `\\text{Speed} = ...` is a label.
        return _unit_words(match.group(1)) is not None and bool(re.search(r"[\d)}]\s*$", text[: match.start()]))

    if not any(is_unit_text(match) for match in TEXT_COMMAND.finditer(text, 0, first_relation.start())):
        return text

    def symbol(match: re.Match[str]) -> str:
        if not is_unit_text(match):
            return match.group(0)
        return "".join(unit_factor(word) for word in _unit_words(match.group(1))) + " "

    return TEXT_COMMAND.sub(symbol, text)


def _parse_latex(span: str) -> list[Claim]:
    def replace_text(match: re.Match[str]) -> str:
        words = match.group(1).split()
        if any(word.lower() in CONNECTIVES for word in words):
            raise CannotParse(f"arithmetic continues in words ({match.group(1).strip()!r})")
        if any(word.lower() in ("mod", "modulo") for word in words):
            return match.group(0)
        return " "

    if _LATEX_NEGATED.search(span):
        raise CannotParse("negated relation (not ≡, ∤) is not read")
    text, modulus = _latex_modulus(span)
    text = _text_units(text)
    labelled = bool(re.match(r"\s*" + TEXT_COMMAND.pattern + r"\s*$", _LATEX_RELATION.split(text, 1)[0]))
    for match in TEXT_COMMAND.finditer(text):
        # Dropping words between two operands would join them: `x = 2 \text{, so } y = 4` is no
        # `x = 2y = 4`.
        before, after = text[: match.start()].rstrip(), text[match.end() :].lstrip()
        words = match.group(1).lower().split()
        if any(word in CONNECTIVES or word in ("mod", "modulo") for word in words):
            continue  # replace_text says why
        if re.search(r"[\w)}]$", before) and re.match(r"[\w(\\]", after) and re.search(r"[A-Za-z]", match.group(1)):
            raise CannotParse(f"words between two expressions ({match.group(1).strip()!r})")
    text = TEXT_COMMAND.sub(replace_text, text)
    if re.search(r"[A-Za-z]'+\s*\(", text):
        raise CannotParse("a derivative (f'(x)) is not read")
    # a' is a name of its own (the LaTeX parser drops the prime: a' = a - 1 read as a = a - 1)
    text = re.sub(r"([A-Za-z])('+)", lambda match: f"{match.group(1)}_{{{'p' * len(match.group(2))}}}", text)
    text, more_modulus = _latex_modulus(text)
    modulus = modulus if modulus is not None else more_modulus
    text = re.sub(r"(?<=\d)\\,(?=\d{3}(?!\d))", "", text)  # 12\,345: a thin space between digit groups
    if re.search(r"(?<![\d.])\d{1,2}:\d{2}(?!\d)", text):
        raise CannotParse("a time of day (9:45) is not arithmetic")
    if re.search(r"\\%\s*[\d(]", text):
        raise CannotParse("an operand after a percent sign")
    text = _LATEX_SPACING.sub(" ", normalize_unicode(text))
    text = re.sub(r"(\d)(?:,|\{,\})(?=\d{3}(?!\d))", r"\1", text)
    text = re.sub(r"\^\s*\\circ|\^\s*\{\\circ\}|°", " ", text)
    if _VECTOR.search(text):
        raise CannotParse("vector notation is not read")
    if "!!" in text:
        raise CannotParse("a double factorial is not read")
    text = base_numerals(text)
    if re.search(r"\\(?:bmod|mod)(?![A-Za-z])", text):
        raise CannotParse("'mod' as an operator inside LaTeX is not read")
    for run in re.findall(r"(?<![\\A-Za-z_])[A-Za-z]{2,}", re.sub(UNIT_PREFIX + r"[a-z]+", " ", text)):
        if len(run) > 3 or run.lower() in _WORDS_IN_MATH:
            raise CannotParse(f"word {run!r} inside math")
    parts = split_top_level(text, _LATEX_RELATION)
    sides_text = [part.strip() for part in parts[0::2]]
    operators = [_LATEX_OPERATOR_NAMES.get(op, op) for op in parts[1::2]]
    sides_text, operators = _truncated_decimals(sides_text, operators)
    if len(sides_text) > 2 and not sides_text[0] and labelled:
        # `\\text{Area} = 8 \\times 5 = 40`: a label before the first relation names the quantity.
        sides_text, operators = sides_text[1:], operators[1:]
    if any(not side for side in sides_text):
        raise CannotParse("empty side of a relation")
    for side in sides_text:
        if re.search(r"(?<![_^\d.])\d+(?:\.\d+)?\s+\d", side):  # not `\log_2 32`
            raise CannotParse(f"two numbers side by side in {side!r}")
    sides = [(side, _latex_expression(side)) for side in sides_text]
    return _link_claims(sides, operators, modulus)


def parse_span(span: str, latex: bool) -> list[Claim]:
    if len(span) > MAX_SPAN_CHARS:
        raise CannotParse(f"expression longer than {MAX_SPAN_CHARS} characters")
    return _parse_latex(span) if latex else _parse_plain(span)


def has_relation(text: str) -> bool:
    return bool(_LATEX_RELATION.search(text))


def load_parsers(*texts: str) -> None:
    """Imports sympy, and readies the LaTeX parser when a text has a backslash: a verifier calls
    this before its deadline starts, so a one-off start-up is never a step's timeout."""
    try:
        import sympy  # noqa: F401

        if any("\\" in text for text in texts):
            _warm_latex_parser()
    except ImportError:  # pragma: no cover - reported as unknown by the parse itself
        pass


@functools.lru_cache(maxsize=1)
def _warm_latex_parser() -> None:
    """The LaTeX parser builds its grammar on its first call (a second or more): done once, here."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    latex2sympy("x_{1} + 1", conversion_config=_latex_conversion(ConversionConfig))


def with_modulus(claim: Claim, modulus: Any) -> Claim:
    return replace(claim, modulus=modulus)
