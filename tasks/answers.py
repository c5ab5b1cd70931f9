"""Final-answer extraction and equivalence checking (math-verify does the comparison)."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

_ANSWER_PATTERNS = (
    re.compile(r"####\s*(?P<answer>[^\n]+)"),
    re.compile(r"[Tt]he (?:final )?answer is[:\s]*(?P<answer>[^\n]+?)\.?\s*$", re.MULTILINE),
)


def _boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}, with nested braces balanced."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    begin = start + len("\\boxed{")
    for index in range(begin, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return text[begin:index].strip()
            depth -= 1
    return None


def extract_answer(text: str) -> str | None:
    """The final answer a solution states, or None if it states none.

    >>> extract_answer("Step 1: 2 + 2 = 4\\nThe answer is 4.")
    '4'
    >>> extract_answer("so the total is \\\\boxed{\\\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_answer("Natalia sold 48+24 = 72 clips.\\n#### 72")
    '72'
    >>> extract_answer("no answer here") is None
    True
    """
    boxed = _boxed(text)
    if boxed:
        return boxed
    for pattern in _ANSWER_PATTERNS:
        matches = list(pattern.finditer(text))
        if matches:
            answer = matches[-1].group("answer").strip().rstrip(".").strip()
            if answer:
                return answer
    return None


def extract_boxed_answer(text: str) -> str | None:
    """The final answer an instruct model states: its last \\boxed{...} (or "the final answer is
    $x$"), as math-verify reads it; None when there is none. Plain "The answer is 5" is not read.

    >>> extract_boxed_answer("so the total is \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_boxed_answer("The answer is 5.") is None
    True
    """
    return _boxed_by_math_verify(text)


@lru_cache(maxsize=65_536)
def _boxed_by_math_verify(text: str) -> str | None:
    from math_verify import LatexExtractionConfig, parse

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    config = LatexExtractionConfig(try_extract_without_anchor=False, boxed_match_priority=0)
    parsed = parse(text, extraction_config=[config], parsing_timeout=timeout)
    if len(parsed) < 2 or not str(parsed[1]).strip():
        return None
    return str(parsed[1]).strip()


def _as_latex(answer: str) -> str:
    # math-verify finds answers inside LaTeX delimiters most reliably.
    return answer if answer.startswith("$") or "\\boxed" in answer else f"${answer}$"


def answers_match(candidate: str | None, reference: str) -> bool:
    """Whether `candidate` is mathematically equivalent to `reference`, according to math-verify.

    >>> answers_match("0.5", "\\\\frac{1}{2}")
    True
    >>> answers_match("17", "18")
    False
    >>> answers_match(None, "3")
    False
    """
    if candidate is None or not candidate.strip():
        return False
    from math_verify import parse, verify

    # math-verify bounds its work with SIGALRM, which only the main thread may use.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    gold = parse(_as_latex(reference), parsing_timeout=timeout)
    guess = parse(_as_latex(candidate), parsing_timeout=timeout)
    if not gold or not guess:
        return False
    return bool(verify(gold, guess, timeout_seconds=timeout))
