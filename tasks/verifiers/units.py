"""Units inside prose arithmetic: `80 km/h × 1.5 h = 120 km`, `48 muffins × $3 per muffin = $144`.

GSM8K-style solutions write units between the numbers, which breaks the math apart. Inside a span
that is arithmetic from end to end (numbers, operators, one relation or more), every unit after a
number becomes a unit symbol (`unit_km`, `per muffin` a division by `unit_muffin`), so the
claim keeps its units and they are compared, never guessed:

- both sides in the same units (or both without): the numbers are compared, and a wrong one is
  invalid (`80 km/h × 1.5 h = 110 km`);
- the units differ (`47 minutes = 47/60 hours`, `1 liter = 1000 cm³`, `5 days × 25 pages =
  125 pages`): equal numbers are valid, unequal ones unknown (a conversion, or a unit left
  implicit), never invalid. A span whose units all follow its relation (`5 * 25 = 125 pages`)
  is read as plain arithmetic, as it always was;
- a sum of different units (`2 boys + 3 girls`) cannot be evaluated: unknown.

A word is a unit only right after a number (or after `per`), and never a word that carries the
sentence (`of`, `times`, `is`, `left`, ...): those leave the span unread as before.
"""

from __future__ import annotations

import re
from typing import Any

UNIT_PREFIX = "unit_"
_SUPERSCRIPTS = {"²": "2", "³": "3"}
# Words that are never units: they carry the sentence or the arithmetic.
_NOT_UNITS = frozenset(
    """a an the and or is are was were be been so then thus hence therefore which that this these
    those it its we he she they you i has have had get gets got gives give giving makes make made
    in on at for to from with into each every all total left remaining altogether now after before
    if when since because as but not no yes also only just about approximately around nearly
    exactly means equals equal step case answer final we us our his her their there here more less
    fewer than times plus minus over per by divided multiplied add added subtract subtracted half
    twice double triple percent squared cubed of mod x""".split()
)
_SINGLE_LETTER_UNITS = frozenset("hmsgLl")
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_WORD = r"(?!per\b)[A-Za-z]+(?:/[A-Za-z]+)?[²³]?"
# A fraction written without spaces carries its unit whole: `2/3 h` is two thirds of an hour.
_QUANTITY = re.compile(
    rf"(?P<number>(?:{_NUMBER})(?:/\d+(?![\d,]))?)(?P<percent>\s*%)?(?P<units>(?:[ \t]+{_WORD}){{0,2}})"
    rf"(?P<per>[ \t]+per[ \t]+{_WORD})?"
)
_OPERATOR = r"[ \t]*[-+*/][ \t]*"
_RELATION = r"[ \t]*(?:<=|>=|!=|=|<|>)[ \t]*"
_SPAN = re.compile(
    rf"(?<![\w.])(?:{_QUANTITY.pattern})(?:(?:{_OPERATOR}|{_RELATION})\(?(?:{_QUANTITY.pattern.replace('?P<', '?P<x')})\)?)+"
)


def is_unit(word: str) -> bool:
    bare = word.rstrip("²³")
    if "/" in bare:
        return all(is_unit(part) for part in bare.split("/"))
    if len(bare) == 1:
        return bare in _SINGLE_LETTER_UNITS
    return bare.isalpha() and bare.lower() not in _NOT_UNITS


def unit_name(word: str) -> str:
    """One name for a unit however it is written: `Cookies` and `cookie` are one unit.

    A rough stem (a final s, then e, then i or y): two spellings that stem apart only make a
    claim's units differ, which can never make it invalid.

    >>> unit_name("Cookies") == unit_name("cookie"), unit_name("batteries") == unit_name("battery")
    (True, True)
    >>> unit_name("inches"), unit_name("km"), unit_name("mins")
    ('unit_inch', 'unit_km', 'unit_min')
    """
    word = word.lower()
    for endings in ("s", "e", "iy"):
        if len(word) > 3 and word[-1] in endings:
            word = word[:-1]
    return UNIT_PREFIX + word


def unit_factor(word: str) -> str:
    power = ""
    if word[-1] in _SUPERSCRIPTS:
        word, power = word[:-1], f"**{_SUPERSCRIPTS[word[-1]]}"
    parts = word.split("/")
    text = f" * {unit_name(parts[0])}{power}"
    for part in parts[1:]:
        text += f" / {unit_name(part)}"
    return text


def _rewrite_quantity(match: re.Match[str]) -> str:
    words = match.group("units").split() if match.group("units") else []
    per = match.group("per").split()[1] if match.group("per") else None
    if not all(is_unit(word) for word in words) or (per is not None and not is_unit(per)):
        return match.group(0)
    number = match.group("number")
    text = (f"({number})" if "/" in number else number) + (match.group("percent") or "")
    for word in words:
        text += unit_factor(word)
    if per is not None:
        text += f" / {unit_name(per.split('/')[0])}"
    return f"({text})" if words or per else text


def mark_units(prose: str) -> str:
    """Prose with the units of every arithmetic span turned into unit symbols (see the docstring).

    >>> mark_units("Next, 80 km/h × 1.5 h = 110 km.".replace("×", "*"))
    'Next, (80 * unit_km / unit_h) * (1.5 * unit_h) = (110 * unit_km).'
    >>> mark_units("She has 3 apples and 4 pears.")
    'She has 3 apples and 4 pears.'
    """
    if not re.search(r"\d[ \t]+[A-Za-z]", prose) or not re.search(r"[=<>]", prose):
        return prose

    def rewrite(span: re.Match[str]) -> str:
        text = span.group(0)
        relation = re.search(r"(?:<=|>=|!=|=|<|>)", text)
        # Units on the left side only matter: a unit after the result alone (`5 * 25 = 125 pages`)
        # was always read, and is left as it was.
        if relation is None or not re.search(rf"\d[ \t]+{_WORD}", text[: relation.start()]):
            return text
        trailing = ""
        words = text.split()
        while words and words[-1].lower() in _NOT_UNITS:  # "= 150 km in total": "in" is not a unit
            trailing = " " + words.pop() + trailing
        core = text[: len(text) - len(trailing)] if trailing else text
        rewritten = _QUANTITY.sub(_rewrite_quantity, core)
        return rewritten + trailing

    return _SPAN.sub(rewrite, prose)


def unit_value(expression: Any, evaluate: Any) -> tuple[Any, dict[str, Any]]:
    """(number, {unit: power}) of an expression with unit symbols; `evaluate` takes the rest.

    Raises ValueError when a sum adds different units.
    """
    import sympy

    if not any(str(symbol).startswith(UNIT_PREFIX) for symbol in expression.free_symbols):
        return evaluate(expression), {}
    if isinstance(expression, sympy.Symbol):
        return sympy.Integer(1), {str(expression): sympy.Integer(1)}
    if isinstance(expression, sympy.Mul):
        number, units = sympy.Integer(1), {}
        for argument in expression.args:
            value, powers = unit_value(argument, evaluate)
            number *= value
            for unit, power in powers.items():
                units[unit] = units.get(unit, 0) + power
        return number, {unit: power for unit, power in units.items() if power != 0}
    if isinstance(expression, sympy.Pow):
        value, powers = unit_value(expression.args[0], evaluate)
        exponent = evaluate(expression.args[1])
        if exponent.q != 1:
            raise ValueError("a unit to a fractional power")
        return value**exponent, {unit: power * exponent for unit, power in powers.items()}
    if isinstance(expression, sympy.Add):
        terms = [unit_value(argument, evaluate) for argument in expression.args]
        if any(powers != terms[0][1] for _, powers in terms):
            raise ValueError("a sum of different units")
        return sum((value for value, _ in terms), sympy.Integer(0)), terms[0][1]
    raise ValueError(f"{type(expression).__name__} with units is not evaluated")
