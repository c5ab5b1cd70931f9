"""Step verifiers: each judges one step valid, invalid or unknown, with evidence and its time.

    >>> get_verifier("arith").name
    'arith'

Importing this package is cheap: each verifier module (and sympy, z3) loads on first use.
"""

from __future__ import annotations

import importlib

from tasks.verifiers.base import StepContext, Verifier

# name -> (module, class); modules are imported only when their verifier is asked for.
_VERIFIERS: dict[str, tuple[str, str]] = {
    "arith": ("tasks.verifiers.arith", "ArithVerifier"),
    "z3": ("tasks.verifiers.z3_verifier", "Z3Verifier"),
    "lean": ("tasks.verifiers.lean", "LeanVerifier"),
    "code": ("tasks.verifiers.code", "CodeVerifier"),
}
VERIFIER_NAMES: tuple[str, ...] = tuple(_VERIFIERS)


def get_verifier(name: str) -> Verifier:
    """A verifier with its default configuration, by name."""
    if name not in _VERIFIERS:
        raise ValueError(f"unknown verifier {name!r}; choose one of: {', '.join(VERIFIER_NAMES)}")
    module_name, class_name = _VERIFIERS[name]
    return getattr(importlib.import_module(module_name), class_name)()


__all__ = ["VERIFIER_NAMES", "StepContext", "Verifier", "get_verifier"]
