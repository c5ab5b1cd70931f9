"""The PRM reads what a step says: trained where arithmetic truth is the only signal, it ranks a
wrong step below its corrected twin, and finds first errors better than a constant scorer.

The pool is synthetic: each problem's reference solution, and the same solution with one
arithmetic slip (the steps after it carry the wrong value on), so a right and a wrong step look
alike but for their numbers. Labels are exact (tasks/ground_truth.py). The base is the embedded
policy, the PRM's default base.
"""

from __future__ import annotations

import random

import pytest

from tasks.ground_truth import slipped_steps, step_truths, synthetic_processbench
from tasks.prm.data import StepwiseExample
from tasks.synthetic import generate_problems

POOL_SEED, HELD_OUT_SEED = 501, 502


def pool(count: int, seed: int) -> list[StepwiseExample]:
    rng = random.Random(seed)
    examples = []
    for index, problem in enumerate(generate_problems(count, seed, 2, 5)):
        slip = rng.randrange(len(problem.reference_steps))
        for name, steps in (("right", list(problem.reference_steps)), ("slip", slipped_steps(problem, slip, rng))):
            truths = step_truths(problem.question, steps)
            examples.append(StepwiseExample(
                solution_id=f"{index}-{name}", problem_id=problem.problem_id, prompt=problem.question, steps=tuple(steps),
                labels=tuple(truths), soft_labels=tuple(float(t) for t in truths), is_correct=all(truths),
                variant="original",
            ))
    return examples


@pytest.fixture(scope="module")
def content_prm(train_prm):
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
    from tasks.prm.config import PRMTrainConfig
    from tasks.prm.model import set_cpu_threads

    set_cpu_threads(2)
    config = PRMTrainConfig(dataset_version=1, steps=120, batch_size=8)  # 120 of 120 pairs, F1 0.88 here
    return train_prm(EMBEDDED_POLICY_DIR, pool(200, POOL_SEED), config, "content-prm")


def test_a_wrong_step_scores_below_its_corrected_twin(content_prm):
    from tasks.prm.score import PRMScorer

    scorer = PRMScorer(content_prm)
    rng = random.Random(HELD_OUT_SEED)
    pairs = []
    for problem in generate_problems(120, HELD_OUT_SEED, 2, 5):
        position = rng.randrange(len(problem.reference_steps))
        right = list(problem.reference_steps)[: position + 1]
        wrong = slipped_steps(problem, position, rng)[: position + 1]
        pairs.append(((problem.question, right), (problem.question, wrong)))
    scores = scorer.score_many([solution for pair in pairs for solution in pair])
    below = [wrong.per_step[-1] < right.per_step[-1] for right, wrong in zip(scores[0::2], scores[1::2], strict=True)]
    assert len(below) == 120
    assert sum(below) / len(below) >= 0.95, f"only {sum(below)} of {len(below)} wrong steps score below their twin"


def test_the_trained_prm_finds_first_errors_a_constant_scorer_cannot(content_prm):
    from tasks.prm.evaluate import choose_threshold, first_error_result
    from tasks.prm.score import PRMScorer

    scorer = PRMScorer(content_prm)
    calibration, measured = synthetic_processbench(60, HELD_OUT_SEED, 2, 5), synthetic_processbench(100, HELD_OUT_SEED + 1, 2, 5)
    learned = {}
    for name, rows in (("calibration", calibration), ("measured", measured)):
        learned[name] = [s.per_step for s in scorer.score_many([(row.problem, row.steps) for row in rows])]
    constant = {name: [[0.5] * len(row.steps) for row in rows] for name, rows in (("calibration", calibration), ("measured", measured))}

    def f1(scores):
        threshold = choose_threshold([row.label for row in calibration], scores["calibration"])
        return first_error_result([row.label for row in measured], scores["measured"], threshold).f1

    assert f1(constant) == 0.0  # one score everywhere: every row gets the same verdict
    assert f1(learned) >= 0.7
