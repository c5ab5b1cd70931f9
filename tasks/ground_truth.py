"""Ground truth of a solution to a synthetic problem, by exact recomputation of its arithmetic.

The synthetic problems (tasks.synthetic) state every operation, so the true running value after
each step is known exactly. A step is correct when it applies the question's next operation to the
true running value and states the true result (and, on the last step, the true answer); see
tasks.policies.simulated.step_is_correct, which this reuses, for the exact rule. Any writer of the
`Step k: a op b = c` format can be checked this way: the simulated policy and the embedded model.
A question that is not synthetic cannot be checked, and gives None ("cannot tell").
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tasks.policies.simulated import parse_question, step_is_correct

if TYPE_CHECKING:
    from schemas.records import Problem
    from tasks.processbench import ProcessBenchRow


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


def slipped_steps(problem: Problem, position: int, rng: random.Random) -> list[str]:
    """The problem's reference solution with one arithmetic slip at step `position` (0-based):
    that step states a wrong result, and the steps after it carry the wrong value on honestly.

    >>> from tasks.synthetic import generate_problems
    >>> problem = generate_problems(1, seed=3, min_steps=3, max_steps=3)[0]
    >>> steps = slipped_steps(problem, 1, random.Random(0))
    >>> first_error(problem.question, steps), step_truths(problem.question, steps)
    (1, [True, False, False])
    """
    from tasks.policies.simulated import _carry_on
    from tasks.synthetic import answer_line, step_line

    truth = parse_question(problem.question)
    value, steps = truth.values[0], []
    for index, operation in enumerate(truth.operations):
        result = _carry_on(value, operation, truth.values[index + 1])
        if index == position:
            deltas = (-10, -2, -1, 1, 2, 10) if abs(result) > 20 else (-3, -2, -1, 1, 2, 3)
            result = result + rng.choice([delta for delta in deltas if result + delta > 0])
        steps.append(step_line(index + 1, value, operation, result))
        value = result
    steps[-1] = f"{steps[-1]}\n{answer_line(value)}"
    return steps


def synthetic_processbench(count: int, seed: int, min_steps: int = 4, max_steps: int = 8) -> list[ProcessBenchRow]:
    """A ProcessBench-format set whose labels are exact: every other row is the reference
    solution (label -1), the rest carry one arithmetic slip at a uniformly drawn step.

    >>> rows = synthetic_processbench(4, seed=1)
    >>> [row.label == -1 for row in rows], all(first_error(r.problem, r.steps) == r.label for r in rows)
    ([True, False, True, False], True)
    """
    from tasks.processbench import ProcessBenchRow
    from tasks.synthetic import generate_problems

    rng = random.Random(f"processbench:{seed}")
    rows = []
    for index, problem in enumerate(generate_problems(count, seed, min_steps, max_steps)):
        if index % 2 == 0:
            steps, label = list(problem.reference_steps), -1
        else:
            label = rng.randrange(len(problem.reference_steps))
            steps = slipped_steps(problem, label, rng)
        rows.append(ProcessBenchRow(f"synthetic-{seed}-{index}", problem.question, tuple(steps), label))
    return rows
