import json

import pytest

from tasks.prm.loop import next_seed, promotion_on_evidence, seeds_of_generate_runs
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


# Per-problem Best-of-16 accuracy (1 = the chosen answer was right) on 8 held-out problems.
PROMOTED = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_a_candidate_better_on_every_resample_is_promoted():
    candidate = [1.0] * 8
    decision, reason, deciding, interval = promotion_on_evidence(candidate, {"promoted v3": PROMOTED}, "bon@16")
    assert (decision, deciding) == ("promote", "promoted v3")
    # The difference is 1 on half the problems and 0 on the rest: mean 0.5; the 2.5% resample
    # quantile is still above zero (8 problems, at least one win in almost every draw).
    assert interval.estimate == 0.5 and 0 < interval.low < 0.5 and interval.high > 0.5
    assert reason.startswith("bon@16 over 8 held-out problems: candidate - promoted v3 = +0.500")


def test_a_worse_candidate_is_kept():
    candidate = [0.0] * 8
    decision, reason, _, interval = promotion_on_evidence(candidate, {"promoted v3": PROMOTED}, "bon@16")
    assert decision == "keep" and reason.startswith("not better:")
    assert interval.estimate == -0.5 and interval.high < 0


def test_a_better_candidate_whose_interval_reaches_zero_is_kept():
    # Better on one problem of eight: +0.125 on average, but a resample without that problem is 0.
    candidate = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    decision, reason, _, interval = promotion_on_evidence(candidate, {"promoted v3": PROMOTED}, "bon@16")
    assert decision == "keep" and reason.startswith("better but not significantly")
    assert interval.estimate == 0.125 and interval.low == 0.0


def test_no_first_promotion_for_a_model_that_does_not_beat_every_baseline():
    # Clearly above random choice, level with the ORM: the first promotion needs both.
    candidate = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    baselines = {"orm": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0], "random": [0.0] * 8}
    decision, reason, deciding, interval = promotion_on_evidence(candidate, baselines, "bon@16")
    assert (decision, deciding) == ("keep", "orm")
    assert interval.estimate == 0.0 and "candidate - random = +0.875" in reason
    assert promotion_on_evidence(candidate, {"random": [0.0] * 8}, "bon@16")[0] == "promote"


def test_promotion_needs_a_baseline_and_held_out_problems():
    with pytest.raises(ValueError, match="needs something to compare with"):
        promotion_on_evidence([1.0], {}, "bon@16")
    assert promotion_on_evidence([], {"random": []}, "bon@16")[:2] == ("keep", "no held-out problem to measure bon@16 on")
