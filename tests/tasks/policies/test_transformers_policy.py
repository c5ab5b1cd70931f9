"""The transformers policy, run on the committed embedded model."""

import dataclasses

import pytest
import torch

from schemas.records import Generation, SamplingParams
from tasks.answers import extract_answer
from tasks.policies.base import Policy
from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
from tasks.policies.transformers_policy import TransformersPolicy, first_stop, next_tokens, nucleus, sample_seed
from tasks.text_format import prefix_for, prompt_for

SHORT = prompt_for("Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?")
LONG = prefix_for(
    "Sam has 40 coins. He gives away 8. Then he has 2 times as many. He gets 5 more. "
    "He shares them equally among 3 friends and keeps one share. How many coins does Sam have now?",
    ["Step 1: 40 - 8 = 32"],
)
PROMPTS = [SHORT, LONG]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Sampling a tiny model: on a busy 2-core machine two spinning threads are many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def policy():
    return TransformersPolicy()


def sample(policy, prompts=PROMPTS, n=2, **params):
    return policy.generate(prompts, n, SamplingParams(**params))


def test_is_a_policy_named_after_its_directory(policy):
    assert isinstance(policy, Policy)
    assert policy.name == f"transformers:{EMBEDDED_POLICY_DIR}"


def test_returns_n_finished_solutions_per_prompt(policy):
    generations = sample(policy, n=3)
    assert [len(row) for row in generations] == [3, 3]
    for row in generations:
        for generation in row:
            assert isinstance(generation, Generation)
            assert generation.finish_reason == "stop"
            assert 0 < generation.generated_tokens <= 160
            assert generation.text.endswith(".\n")
            assert extract_answer(generation.text) is not None
    assert all(generation.text.startswith("Step 1: ") for generation in generations[0])
    assert all(generation.text.startswith("Step 2: ") for generation in generations[1])


# The embedded model is confident at temperature 1 (it solves most problems); a hotter
# temperature makes the random stream decide tokens, which is what these tests are about.
HOT = 2.5


def test_same_inputs_give_the_same_samples_and_another_seed_others(policy):
    first = sample(policy, n=4, seed=5, max_new_tokens=30, temperature=HOT)
    assert sample(policy, n=4, seed=5, max_new_tokens=30, temperature=HOT) == first
    assert sample(policy, n=4, seed=6, max_new_tokens=30, temperature=HOT) != first
    assert len({generation.text for generation in first[1]}) > 1


def test_a_sample_does_not_depend_on_the_rest_of_its_batch(policy):
    params = SamplingParams(seed=3, max_new_tokens=30, temperature=HOT)
    alone = TransformersPolicy(batch_size=1).generate([LONG], 2, params)
    together = sample(policy, seed=3, max_new_tokens=30, temperature=HOT)
    assert together[1] == alone[0]
    assert alone[0][0] != alone[0][1]  # two different streams, not one sample repeated


def test_stop_string_cuts_the_text_before_it(policy):
    full = sample(policy, seed=2, max_new_tokens=30)
    stopped = sample(policy, seed=2, max_new_tokens=30, stop=("\n",))
    for full_row, stopped_row in zip(full, stopped):
        for whole, cut in zip(full_row, stopped_row):
            assert cut.text == whole.text.split("\n")[0]
            assert cut.finish_reason == "stop"
            assert cut.generated_tokens < whole.generated_tokens


def test_max_new_tokens_ends_with_length(policy):
    generations = sample(policy, max_new_tokens=5)
    # "Step", " ", digit, ":", " ": five tokens.
    assert {generation.text for row in generations for generation in row} == {"Step 1: ", "Step 2: "}
    assert all(generation.finish_reason == "length" and generation.generated_tokens == 5 for row in generations for generation in row)


def test_temperature_zero_is_greedy_and_a_tiny_top_p_equals_it(policy):
    greedy = sample(policy, n=2, temperature=0.0, max_new_tokens=30)
    assert greedy == sample(policy, n=2, temperature=0.0, seed=9, max_new_tokens=30)
    assert all(row[0] == row[1] for row in greedy)
    assert sample(policy, n=2, top_p=1e-6, seed=4, max_new_tokens=30) == greedy


@pytest.mark.parametrize(
    ("n", "params", "message"),
    [
        (0, SamplingParams(), "n must be"),
        (1, SamplingParams(temperature=-1.0), "temperature"),
        (1, SamplingParams(top_p=0.0), "top_p"),
        (1, SamplingParams(max_new_tokens=0), "max_new_tokens"),
        (1, SamplingParams(stop=("",)), "stop strings"),
    ],
)
def test_meaningless_settings_fail_fast(policy, n, params, message):
    with pytest.raises(ValueError, match=message):
        policy.generate(PROMPTS, n, params)


def test_a_missing_model_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_embedded_policy"):
        TransformersPolicy(tmp_path).generate(PROMPTS, 1, SamplingParams())


def test_sample_seed_depends_on_seed_prompt_and_index():
    seeds = {sample_seed(seed, prompt, index) for seed in (0, 1) for prompt in ("a", "b") for index in (0, 1)}
    assert len(seeds) == 8
    assert sample_seed(0, "a", 0) == sample_seed(0, "a", 0)


def test_first_stop_finds_the_earliest_of_several():
    assert first_stop("x = 5\nStep 2", ["Step", "\n"]) == 5
    assert first_stop("x = 5", ["Step"]) is None


def test_nucleus_keeps_the_smallest_set_reaching_top_p():
    probabilities = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.5, 0.25, 0.25]])
    kept = nucleus(probabilities, 0.8) > 0
    # 0.5 + 0.25 falls short of 0.8, so the last row needs all three tokens.
    assert kept.tolist() == [[False, True, True], [True, True, False], [True, True, True]]


def test_next_tokens_draws_each_row_from_its_own_generator():
    logits = torch.zeros(2, 50)
    params = SamplingParams(temperature=1.0)

    def draw(seeds):
        return next_tokens(logits, params, [torch.Generator().manual_seed(seed) for seed in seeds]).tolist()

    both = draw([1, 2])
    assert both == [draw([1, 7])[0], draw([9, 2])[1]]
    assert next_tokens(torch.tensor([[0.0, 3.0, 1.0]]), dataclasses.replace(params, temperature=0.0), []).tolist() == [1]
