"""The examples in docstrings are tests too."""

import doctest
import importlib

import pytest

MODULES = [
    "tasks.ids", "tasks.answers", "tasks.splitting", "tasks.synthetic", "tasks.text_format",
    "tasks.labelers.mc", "tasks.dataset", "tasks.labelers.search", "tasks.labelers.progress",
    "tasks.augment", "tasks.ground_truth", "tasks.policies.vllm_policy", "tasks.policies.openai_policy",
    "tasks.policies.cache", "warehouse.connection", "warehouse.lock",
    "tasks.verifiers.claims", "tasks.verifiers.reading", "tasks.verifiers.roles", "tasks.verifiers.knowledge", "tasks.verifiers.units",
    "tasks.verifiers.arith",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
