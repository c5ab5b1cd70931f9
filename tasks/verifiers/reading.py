"""Reading a step: its words, markers and math in reading order, each relation-bearing piece parsed.

What counts as a relation:
- A math span in prose (`Step 2: 21 - 3 = 18`, `so 14 + 7 = 21 apples`), a math region
  (`$3 \\cdot 4 = 12$`, `\\(...\\)`, `\\[...\\]`), bare LaTeX in prose, and GSM8K calculator
  annotations (`<<48/2=24>>`). `40% of 450` and `3/4 of 120` are products.

What is not:
- The answer line (`The answer is 18.`, `#### 18`): the final answer is judged against the
  reference by the answer checker, not by step verifiers, so it is removed before extraction.
- Python code (fenced blocks, `>>>` lines): that is the code verifier's input.
- List markers and headers (`1.`, `(b)`, `## Step 3:`): they become markers, never numbers;
  `Case 2:` becomes a case marker.

A relation we cannot read with certainty (`half of 50 = 25`, `3 each * 4 = 12`) is never guessed
at: its fragment carries the reason, and verifiers turn it into `unknown`.
`read_items` gives the step as items for `tasks.verifiers.roles`; `extract_claims` gives every
relation of a text whatever its role.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING

from tasks.verifiers.claims import (
    CONNECTIVES,
    TEXT_COMMAND,
    TIMES_X,
    CannotParse,
    Claim,
    Extraction,
    Premises,
    Unparsed,
    has_relation,
    normalize_unicode,
    parse_span,
    split_top_level,
)
from tasks.verifiers.units import UNIT_PREFIX, is_unit, mark_units

if TYPE_CHECKING:
    from tasks.verifiers.base import StepContext

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
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")

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

_OPENING_CASE = re.compile(r"^\s*(?:\*\*)?\s*(?:sub)?case\b\s*(?P<label>[^\n:.*]*)", re.IGNORECASE)
_FIRST_LABELS = frozenset("1 a i one".split())


def opening_case(text: str) -> str | None:
    """The label of the case a step opens with (`**Case 2:** ...` -> '2'), or None.

    >>> opening_case("**Case $n < 0$:** Then ..."), opening_case("## Step 4: Case 1: x > 0")
    ('$n < 0$', '1')
    >>> opening_case("In case 2, ...") is None
    True
    """
    match = _OPENING_CASE.match(_HEADER.sub("", text, count=1))
    return match["label"].strip() if match else None


def first_case_label(label: str) -> bool:
    """`Case 1`, `Case (a)`, `Case i`: the first of a run of cases."""
    words = label.strip("() ").split()
    return bool(words) and words[0].strip("().").lower() in _FIRST_LABELS


PROSE, LATEX, ANNOTATION = "prose", "latex", "annotation"
# "40% of 450" and "3/4 of 120" are products; "of" before anything but a number stays words.
_SHARE_OF = re.compile(r"(\d+(?:\.\d+)?\s*%|\b\d+\s*/\s*\d+)\s+of\s+(?=\$?\d)")




def _mark(text: str) -> str:
    """Headers dropped; list items, parts and cases replaced by their marker characters."""
    text = _HEADER.sub("", text)
    text = _LIST_ITEM.sub(f" {_ITEM_CHAR} ", text)
    text = _PART.sub(f" {_ITEM_CHAR} ", text)
    text = _CASE.sub(f" {_CASE_CHAR} ", text)
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    return text


def _closing_dollar(text: str, start: int) -> int:
    """The next `$` that is not an escaped `\\$`, or -1."""
    index = text.find("$", start)
    while index > 0 and text[index - 1] == "\\":
        index = text.find("$", index + 1)
    return index


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
            joined = TEXT_COMMAND.sub(lambda match: f" {match.group(1)} ", joined)
            joined = _SHARE_OF.sub(r"\1 * ", normalize_unicode(joined))
            segments.append((PROSE, mark_units(TIMES_X.sub(" * ", joined))))

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
            if match.start() > 0 and text[match.start() - 1] == "\\":
                prose.append(" ")  # an escaped \$ is a currency sign
                continue
            closing = _closing_dollar(text, match.end())
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
    |(?P<number>\d+_\{?\d+\}?|\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|\d+(?:\.\d+)?|\.\d+)
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


# Words between two numbers that make the second part of a phrase, not an operand: "3 in 10",
# "from 9 to 12".
_PHRASE_WORDS = frozenset("in to".split())


def _span_problem(
    text: str, tokens: list[_Token], before: _Token | None, after: _Token | None, quantity_before: str | None = None
) -> str | None:
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
    if quantity_before is not None and first.kind in ("number", "open"):
        return f"the expression continues a phrase ({quantity_before!r}: '3 in 10 = 30%', '1 hour 30 minutes')"
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
        return Fragment(fragment_text, tuple(parse_span(text, latex)), None, annotation, values_follow)
    except CannotParse as error:
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
_CASES = re.compile(r"\\begin\{[dr]?cases\*?\}(?P<body>.*?)\\end\{[dr]?cases\*?\}", re.DOTALL)
_CONTINUED_LINE = re.compile(r"\\\\\s*(?=[=<>]|\\(?:le|ge|leq|geq|approx|equiv|neq|lt|gt)(?![A-Za-z]))")
_AFTER_ALIGNMENT = re.compile(r"\s*(?:[=<>]|\\(?:le|ge|leq|geq|approx|equiv|neq|lt|gt)(?![A-Za-z]))")


def _piecewise_cases(content: str) -> bool:
    """Whether a `cases` block pairs values with conditions (`2x + 1 & x < 0`), not a system of
    equations (`x + y = 5 \\\\ x - y = 1`) or an aligned chain (`x &= 5`)."""
    for block in _CASES.finditer(content):
        for row in block.group("body").split("\\\\"):
            before, mark, after = row.partition("&")
            if mark and before.strip() and after.strip() and not _AFTER_ALIGNMENT.match(after):
                return True
    return False


def _latex_items(content: str) -> list[Item]:
    """A LaTeX region as items: each relation-bearing piece a fragment, separators as words.

    An aligned chain (`a &= b \\\\ &= c`) reads as one chain. A `cases` block is not read: its rows
    are values paired with conditions (`2x + 1 & x < 0`), and joining them would make products.
    """
    if _piecewise_cases(content):
        reason = "a cases block of values and conditions is not read"
        return [Item(FRAGMENT, content.strip(), Fragment(" ".join(content.split()), (), reason))]
    items: list[Item] = []
    content = _CONTINUED_LINE.sub(" ", _ALIGNED.sub(" ", content).replace("&", " "))
    pieces = split_top_level(content, _LATEX_SEPARATOR)
    texts, separators = pieces[0::2], pieces[1::2] + [""]
    for index, (piece, separator) in enumerate(zip(texts, separators, strict=True)):
        stripped = piece.strip()
        trailing = ""
        while stripped and stripped[-1] in ".:":
            trailing = stripped[-1] + trailing
            stripped = stripped[:-1].rstrip()
        if stripped:
            if has_relation(stripped):
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


def _quantity_before(tokens: list[_Token], first: int) -> str | None:
    """A number and a word right before a run that the run continues: `3 in` of `3 in 10 = 30%`,
    and `1 hour` of `1 hour 30 minutes = 90 minutes` (one quantity in two units)."""
    significant = [token for token in tokens[max(0, first - 6) : first] if token.kind != "space"]
    if len(significant) < 2 or significant[-1].kind != "word" or significant[-2].kind != "number":
        return None
    word = significant[-1].text
    following = "".join(token.text for token in tokens[first : first + 6])
    starts_with_unit = re.match(rf"\(\s*[\d.,]+\s*\*\s*{UNIT_PREFIX}", following)
    if word.lower() in _PHRASE_WORDS or (starts_with_unit and is_unit(word)):
        return f"{significant[-2].text} {word}"
    return None


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
                problem = _span_problem(text, run, before, after, _quantity_before(tokens, index))
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
            if has_relation(segment):
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


# ---------------------------------------------------------------------------------------------
# Public functions


def _claim_key(claim: Claim) -> tuple:
    return (claim.operator, claim.relation.func, claim.relation.lhs, claim.relation.rhs, claim.modulus)


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
    seen: set[tuple] = set()
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
