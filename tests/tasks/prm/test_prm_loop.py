import json

import pytest

from tasks.prm.loop import next_seed, promotion, seeds_of_generate_runs
from tasks.synthetic import generate_problems


def test_seeds_come_from_synthetic_generate_runs_only():
    configs = [json.dumps({"seed": 0, "seeds_file": None}), json.dumps({"seed": 5, "seeds_file": "gsm8k.jsonl"}),
               json.dumps({"seed": 2, "seeds_file": None}), None]
    assert seeds_of_generate_runs(configs) == [0, 2]


def test_next_seed_follows_the_used_ones_and_skips_seeds_with_known_problems():
    def ids(seed):
        return [problem.problem_id for problem in generate_problems(3, seed)]

    seed, reason = next_seed([0, 1], first_seed=1, known_problems=set(), problem_ids_for=ids)
    assert seed == 2 and "up to 1" in reason
    known = set(ids(2))
    seed, reason = next_seed([0, 1], first_seed=1, known_problems=known, problem_ids_for=ids)
    assert seed == 3 and "skipped 1 seed(s)" in reason
    assert not set(ids(3)) & known
    assert next_seed([], first_seed=7, known_problems=set(), problem_ids_for=ids)[0] == 7


def test_next_seed_gives_up_loudly():
    with pytest.raises(RuntimeError, match="no seed within 3"):
        next_seed([], 0, {"same"}, lambda seed: ["same"], tries=3)


@pytest.mark.parametrize(
    ("candidate", "promoted", "has_promoted", "decision"),
    [(0.5, None, False, "promote"), (0.61, 0.6, True, "promote"), (0.6, 0.6, True, "keep"),
     (0.59, 0.6, True, "keep"), (None, 0.6, True, "keep"), (0.1, None, True, "promote")],
)
def test_only_a_strictly_better_f1_promotes(candidate, promoted, has_promoted, decision):
    assert promotion(candidate, promoted, has_promoted)[0] == decision
