"""Content-hash ids: the same content always gets the same id, so reruns write nothing twice."""

from __future__ import annotations

import hashlib

_SEPARATOR = "\x1f"  # unit separator: cannot appear in normal text, so fields never run together


def content_id(*parts: object) -> str:
    """A 32-hex-digit id for the given parts, stable across processes and machines.

    >>> content_id("a", "b") == content_id("a", "b")
    True
    >>> content_id("ab", "") == content_id("a", "b")
    False
    """
    joined = _SEPARATOR.join("" if part is None else str(part) for part in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def problem_id(question: str, answer: str) -> str:
    return content_id("problem", question.strip(), answer.strip())


def node_id(problem_id_: str, parent_id: str | None, step_text: str) -> str:
    """A step's id hashes its parent (or its problem, at the root) and its own text."""
    anchor = parent_id if parent_id is not None else f"root:{problem_id_}"
    return content_id("node", anchor, step_text)
