"""The examples in docstrings are tests too: every module's examples run, and as many as it holds.

EXAMPLES names each module with examples and how many it holds, so a module whose examples stop
being found (an import that hides a function, a docstring that moves into a nested function, a
module dropped from this list) fails here instead of silently running nothing.
"""

import ast
import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "schemas", "flows", "warehouse")

EXAMPLES = {
    "schemas.config": 3,
    "schemas.errors": 1,
    "tasks.answers": 9,
    "tasks.augment": 4,
    "tasks.consensus": 4,
    "tasks.critic": 8,
    "tasks.dataset": 8,
    "tasks.exports": 1,
    "tasks.fit": 2,
    "tasks.gates": 1,
    "tasks.ground_truth": 12,
    "tasks.ids": 2,
    "tasks.labelers.adaptive": 2,
    "tasks.labelers.judge": 8,
    "tasks.labelers.mc": 2,
    "tasks.labelers.progress": 1,
    "tasks.labelers.search": 2,
    "tasks.policies.cache": 2,
    "tasks.policies.chat_model": 1,
    "tasks.policies.embedded_model": 3,
    "tasks.policies.openai_policy": 9,
    "tasks.policies.simulated": 7,
    "tasks.policies.transformers_policy": 5,
    "tasks.policies.vllm_policy": 5,
    "tasks.prm.data": 3,
    "tasks.prm.evaluate": 23,
    "tasks.prm.loop": 5,
    "tasks.prm.implicit": 1,
    "tasks.prm.model": 4,
    "tasks.prm.modeling": 7,
    "tasks.prm.score": 1,
    "tasks.prm.stats": 4,
    "tasks.prm.train": 8,
    "tasks.prm.trainer": 5,
    "tasks.processbench": 5,
    "tasks.prompts": 3,
    "tasks.splitting": 2,
    "tasks.synthetic": 1,
    "tasks.text_format": 2,
    "tasks.verification": 3,
    "tasks.verifiers": 1,
    "tasks.verifiers.arith": 2,
    "tasks.verifiers.base": 5,
    "tasks.verifiers.claims": 3,
    "tasks.verifiers.code": 3,
    "tasks.verifiers.gate": 6,
    "tasks.verifiers.lean": 7,
    "tasks.verifiers.reading": 6,
    "tasks.verifiers.roles": 2,
    "tasks.verifiers.knowledge": 1,
    "tasks.verifiers.units": 4,
    "tasks.verifiers.z3_verifier": 5,
    "warehouse.connection": 2,
    "warehouse.lock": 1,
    "warehouse.sql": 4,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def examples_in_source(path: Path) -> int:
    """Examples written in the file's docstrings (module, classes, functions, at any depth)."""
    parser = doctest.DocTestParser()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = (node for node in ast.walk(tree)
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))
    return sum(len(parser.get_examples(ast.get_docstring(node, clean=False) or "")) for node in nodes)


def written_examples() -> dict[str, int]:
    counts = {module_name(path): examples_in_source(path) for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    return {name: count for name, count in counts.items() if count}


def test_every_module_with_examples_is_listed_with_its_count():
    assert written_examples() == EXAMPLES


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_docstring_examples(name):
    assert EXAMPLES[name] > 0
    result = doctest.testmod(importlib.import_module(name))
    assert result == doctest.TestResults(failed=0, attempted=EXAMPLES[name])
