"""Seeded generator of multi-step arithmetic word problems with exact answers and steps."""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas.records import Problem
from tasks.ids import problem_id

PEOPLE = (
    ("Mia", "She"), ("Sam", "He"), ("Ava", "She"), ("Leo", "He"), ("Zoe", "She"), ("Max", "He"),
    ("Ivy", "She"), ("Ben", "He"), ("Eli", "He"), ("Nia", "She"), ("Tom", "He"), ("Ada", "She"),
)
ITEMS = ("apples", "marbles", "stickers", "coins", "books", "shells", "cards", "pens")
OPERATORS = ("+", "-", "*", "/")


@dataclass(frozen=True)
class Operation:
    operator: str
    operand: int


def apply(value: int, operation: Operation) -> int:
    if operation.operator == "+":
        return value + operation.operand
    if operation.operator == "-":
        return value - operation.operand
    if operation.operator == "*":
        return value * operation.operand
    if value % operation.operand:
        raise ValueError(f"{value} is not divisible by {operation.operand}")
    return value // operation.operand


def _choose_operation(rng: random.Random, value: int) -> Operation:
    """An operation that keeps the running value a positive integer below 200.

    The numbers stay small on purpose: the embedded policy (a few million parameters, trained in
    minutes on a CPU) must get most steps right and still make real mistakes.
    """
    while True:
        operator = rng.choice(OPERATORS)
        if operator == "+":
            return Operation("+", rng.randint(1, 20))
        if operator == "-" and value > 2:
            return Operation("-", rng.randint(1, min(value - 1, 20)))
        if operator == "*" and value <= 30:
            return Operation("*", rng.randint(2, 3))
        if operator == "/":
            divisors = [d for d in (2, 3) if value % d == 0]
            if divisors:
                return Operation("/", rng.choice(divisors))


def _sentence(operation: Operation, pronoun: str) -> str:
    operand = operation.operand
    if operation.operator == "+":
        return f"{pronoun} gets {operand} more."
    if operation.operator == "-":
        return f"{pronoun} gives away {operand}."
    if operation.operator == "*":
        return f"Then {pronoun.lower()} has {operand} times as many."
    return f"{pronoun} shares them equally among {operand} friends and keeps one share."


def step_line(index: int, left: int, operation: Operation, result: int) -> str:
    return f"Step {index}: {left} {operation.operator} {operation.operand} = {result}"


def answer_line(answer: int | str) -> str:
    return f"The answer is {answer}."


def make_problem(rng: random.Random, min_steps: int = 2, max_steps: int = 6) -> Problem:
    name, pronoun = rng.choice(PEOPLE)
    item = rng.choice(ITEMS)
    value = rng.randint(2, 30)
    sentences = [f"{name} has {value} {item}."]
    steps: list[str] = []
    for index in range(1, rng.randint(min_steps, max_steps) + 1):
        operation = _choose_operation(rng, value)
        result = apply(value, operation)
        sentences.append(_sentence(operation, pronoun))
        steps.append(step_line(index, value, operation, result))
        value = result
    sentences.append(f"How many {item} does {name} have now?")
    steps[-1] = f"{steps[-1]}\n{answer_line(value)}"
    question = " ".join(sentences)
    answer = str(value)
    return Problem(
        problem_id=problem_id(question, answer),
        question=question,
        answer=answer,
        source="synthetic",
        reference_steps=tuple(steps),
    )


def generate_problems(
    count: int, seed: int, min_steps: int = 2, max_steps: int = 6
) -> list[Problem]:
    """`count` distinct problems; the same seed always gives the same list.

    >>> [p.answer for p in generate_problems(3, seed=7)] == [p.answer for p in generate_problems(3, seed=7)]
    True
    """
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps} and {max_steps}")
    rng = random.Random(seed)
    problems: dict[str, Problem] = {}
    while len(problems) < count:
        problem = make_problem(rng, min_steps, max_steps)
        problems.setdefault(problem.problem_id, problem)
    return list(problems.values())
