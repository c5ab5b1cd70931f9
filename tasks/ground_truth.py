"""Ground truth of a solution to a synthetic problem, by exact recomputation of its arithmetic.

The synthetic problems (tasks.synthetic) state every operation, so the true running value after
each step is known exactly. A step is correct when it applies the question's next operation to the
true running value and states the true result (and, on the last step, the true answer); see
tasks.policies.simulated.step_is_correct, which this reuses, for the exact rule. Any writer of the
`Step k: a op b = c` format can be checked this way: the simulated policy and the embedded model.
A question that is not synthetic cannot be checked, and gives None ("cannot tell").
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.policies.simulated import parse_question, step_is_correct


def step_truths(question: str, steps: Sequence[str]) -> list[bool] | None:
    """Whether each step is correct, or None when the question is not a synthetic one.

    >>> question = "Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?"
    >>> step_truths(question, ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\\nThe answer is 18."])
    [True, True]
    >>> step_truths(question, ["Step 1: 14 + 7 = 22", "Step 2: 22 - 3 = 19\\nThe answer is 19."])
    [False, False]
    >>> step_truths("What is 2 + 2?", ["4"]) is None
    True
    """
    try:
        parse_question(question)
    except ValueError:
        return None
    return [step_is_correct(question, steps[:index], step) for index, step in enumerate(steps)]


def first_error(question: str, steps: Sequence[str]) -> int | None:
    """The 0-based index of the first wrong step, -1 if every step is right, None if unknowable.

    >>> question = "Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?"
    >>> first_error(question, ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 17\\nThe answer is 17."])
    1
    """
    truths = step_truths(question, steps)
    if truths is None:
        return None
    return next((index for index, correct in enumerate(truths) if not correct), -1)
