"""The text format the policy reads and writes: a prompt, then one `Step k:` line per step."""

from __future__ import annotations

from collections.abc import Sequence

from schemas.records import Problem

ANSWER_HEADER = "Answer:\n"


def prompt_for(question: str) -> str:
    """The prompt a policy continues with a step-by-step solution.

    >>> prompt_for("What is 2 + 3?")
    'Question: What is 2 + 3?\\nAnswer:\\n'
    """
    return f"Question: {question.strip()}\n{ANSWER_HEADER}"


def prefix_for(question: str, steps: Sequence[str]) -> str:
    """The prompt plus the given steps, ready for the policy to write the next step.

    >>> prefix_for("Q?", ["Step 1: 1 + 1 = 2"])
    'Question: Q?\\nAnswer:\\nStep 1: 1 + 1 = 2\\n'
    """
    return prompt_for(question) + "".join(f"{step}\n" for step in steps)


def training_text(problem: Problem) -> str:
    """A worked example for training the embedded policy (the tokenizer adds end-of-text)."""
    return prefix_for(problem.question, problem.reference_steps)
