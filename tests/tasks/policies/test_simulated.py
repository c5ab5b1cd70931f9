import math
import re
from fractions import Fraction

import pytest

from schemas.records import SamplingParams
from tasks.answers import answers_match, extract_answer
from tasks.policies.base import Policy
from tasks.policies.simulated import (
    SimulatedConfig,
    SimulatedPolicy,
    first_error_index,
    parse_question,
    parse_spec,
    read_step,
    step_is_correct,
    success_probability,
)
from tasks.splitting import split_steps
from tasks.synthetic import Operation, apply, generate_problems, step_line
from tasks.text_format import prefix_for, prompt_for

# True running values: 14, 21, 18, 54, 27.
QUESTION = (
    "Mia has 14 apples. She gets 7 more. She gives away 3. Then she has 3 times as many. "
    "She shares them equally among 2 friends and keeps one share. How many apples does Mia have now?"
)
# True running values: 14, 21, 18.
SHORT = "Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?"
PARAMS = SamplingParams()


def policy(spec: str) -> SimulatedPolicy:
    return SimulatedPolicy.from_spec(spec)


def texts(spec: str, steps: list[str], n: int = 1, question: str = QUESTION, **params) -> list[str]:
    generations = policy(spec).generate([prefix_for(question, steps)], n, SamplingParams(**params))[0]
    return [generation.text for generation in generations]


# --- Reading questions --------------------------------------------------------------------------


def test_parse_question_reads_the_starting_amount_and_operations():
    parsed = parse_question(QUESTION)
    assert parsed.operations == (Operation("+", 7), Operation("-", 3), Operation("*", 3), Operation("/", 2))
    assert parsed.values == (14, 21, 18, 54, 27)


def test_parse_question_round_trips_every_generated_problem():
    problems = generate_problems(400, seed=11, min_steps=1, max_steps=6)
    assert {len(problem.reference_steps) for problem in problems} == {1, 2, 3, 4, 5, 6}
    for problem in problems:
        parsed = parse_question(problem.question)
        steps = [
            step_line(index, parsed.values[index - 1], operation, parsed.values[index])
            for index, operation in enumerate(parsed.operations, start=1)
        ]
        steps[-1] += f"\nThe answer is {parsed.values[-1]}."
        assert tuple(steps) == problem.reference_steps
        assert str(parsed.values[-1]) == problem.answer


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("What is 2 + 3?", "not a synthetic question"),
        ("Mia has 14 apples. She sings. How many apples does Mia have now?", "'She sings.' is none of"),
        ("Mia has 5 apples. How many apples does Mia have now?", "not a synthetic question"),
        (
            "Mia has 5 apples. She shares them equally among 2 friends and keeps one share. "
            "How many apples does Mia have now?",
            "does not divide evenly",
        ),
    ],
)
def test_parse_question_rejects_other_text(question, message):
    with pytest.raises(ValueError, match=message):
        parse_question(question)


# --- The format it writes -----------------------------------------------------------------------


def test_without_errors_it_writes_exactly_the_training_format():
    for problem in generate_problems(50, seed=3):
        generated = texts("simulated:error_rate=0", [], n=2, question=problem.question)
        expected = "".join(f"{step}\n" for step in problem.reference_steps)
        assert generated == [expected, expected]


def test_continues_a_prefix_from_the_value_it_claims():
    assert texts("simulated:error_rate=0", ["Step 1: 14 + 7 = 21"]) == [
        "Step 2: 21 - 3 = 18\nStep 3: 18 * 3 = 54\nStep 4: 54 / 2 = 27\nThe answer is 27.\n"
    ]
    # No recovery: it carries the wrong 22 on honestly; 57 / 2 rounds to 28, never the true 27.
    assert texts("simulated:error_rate=0,recovery_rate=0", ["Step 1: 14 + 7 = 22"]) == [
        "Step 2: 22 - 3 = 19\nStep 3: 19 * 3 = 57\nStep 4: 57 / 2 = 28\nThe answer is 28.\n"
    ]
    assert texts("simulated:error_rate=0,recovery_rate=1", ["Step 1: 14 + 7 = 22"]) == [
        "Step 2: 21 - 3 = 18\nStep 3: 18 * 3 = 54\nStep 4: 54 / 2 = 27\nThe answer is 27.\n"
    ]
    all_steps = ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18", "Step 3: 18 * 3 = 54", "Step 4: 54 / 2 = 27"]
    assert texts("simulated:error_rate=0", all_steps) == ["The answer is 27.\n"]


def test_a_complete_prefix_gets_an_empty_continuation():
    complete = ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 17\nThe answer is 17."]
    [generation] = policy("simulated").generate([prefix_for(SHORT, complete)], 1, PARAMS)[0]
    assert (generation.text, generation.generated_tokens, generation.finish_reason) == ("", 0, "stop")


def test_samples_split_into_steps_and_state_an_answer_like_the_model():
    problem = generate_problems(1, seed=4, min_steps=5, max_steps=5)[0]
    generations = policy("simulated:error_rate=0.5").generate([prompt_for(problem.question)], 30, PARAMS)[0]
    for generation in generations:
        steps = split_steps(generation.text)
        assert len(steps) == 5
        assert [step.split(":")[0] for step in steps] == [f"Step {k}" for k in range(1, 6)]
        written = [read_step(step) for step in steps]
        assert all(step is not None and step.computation is not None for step in written)
        assert written[-1].answer == written[-1].computation.result
        assert extract_answer(generation.text) == str(written[-1].answer)
        assert generation.generated_tokens == len(generation.text.split()) == 5 * 7 + 4  # seven words a step, four in the answer
        assert generation.finish_reason == "stop"
    answers = [extract_answer(generation.text) for generation in generations]
    right = next(answer for answer in answers if answer == problem.answer)
    wrong = next(answer for answer in answers if answer != problem.answer)
    assert answers_match(right, problem.answer) and not answers_match(wrong, problem.answer)


def test_stop_strings_and_max_new_tokens_cut_the_text():
    prefix = ["Step 1: 14 + 7 = 21"]
    spec = "simulated:error_rate=0"
    [stopped] = policy(spec).generate([prefix_for(QUESTION, prefix)], 1, SamplingParams(stop=("\n",)))[0]
    assert (stopped.text, stopped.generated_tokens, stopped.finish_reason) == ("Step 2: 21 - 3 = 18", 7, "stop")
    [cut] = policy(spec).generate([prefix_for(QUESTION, prefix)], 1, SamplingParams(max_new_tokens=9))[0]
    assert (cut.text, cut.generated_tokens, cut.finish_reason) == ("Step 2: 21 - 3 = 18\nStep 3:", 9, "length")


def test_prompts_it_cannot_read_raise_actionable_errors():
    with pytest.raises(ValueError, match="reads prompts of the form 'Question: "):
        policy("simulated").generate(["What is 2 + 3?"], 1, PARAMS)
    with pytest.raises(ValueError, match="step 2 'Step 2: 21 -' is not 'Step k: a op b = c'"):
        policy("simulated").generate([prefix_for(QUESTION, ["Step 1: 14 + 7 = 21", "Step 2: 21 -"])], 1, PARAMS)


def test_is_a_policy():
    assert isinstance(SimulatedPolicy(), Policy)


# --- Determinism --------------------------------------------------------------------------------


def test_samples_depend_on_seed_prompt_and_index_only():
    prompts = [prompt_for(problem.question) for problem in generate_problems(3, seed=8, min_steps=6, max_steps=6)]
    simulated = policy("simulated:error_rate=0.4")
    together = simulated.generate(prompts, 6, PARAMS)
    assert simulated.generate(prompts, 6, PARAMS) == together
    assert policy("simulated:error_rate=0.4").generate(prompts[2:], 3, PARAMS)[0] == together[2][:3]
    assert simulated.generate(prompts[::-1], 6, PARAMS)[::-1] == together
    assert simulated.generate(prompts, 6, SamplingParams(seed=1)) != together
    assert policy("simulated:error_rate=0.4,seed=1").generate(prompts, 6, PARAMS) != together
    assert len({generation.text for generation in together[0]}) > 1


# --- Ground truth -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 18."], -1),
        (["Step 1: 14 + 7 = 22", "Step 2: 22 - 3 = 19\nThe answer is 19."], 0),
        (["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 17\nThe answer is 17."], 1),
        (["Step 1: 14 + 7 = 22", "Step 2: 21 - 3 = 18\nThe answer is 18."], 0),  # recovered, still 0
        (["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 17."], 1),  # wrong answer line
        (["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18", "The answer is 18."], -1),
        (["Step 1: 14 + 7 =", "Step 2: 21 - 3 = 18"], 0),
        (["Step 1: 14 + 7 = 21"], -1),  # unfinished, but nothing wrong yet
    ],
)
def test_first_error_index(steps, expected):
    assert first_error_index(SHORT, steps) == expected


@pytest.mark.parametrize(
    ("steps_before", "step", "expected"),
    [
        ([], "Step 1: 14 + 7 = 21", True),
        (["Step 1: 14 + 7 = 22"], "Step 2: 21 - 3 = 18", True),  # recovery: the true value again
        (["Step 1: 14 + 7 = 22"], "Step 2: 22 - 3 = 19", False),  # right arithmetic, wrong value
        ([], "Step 1: 7 + 14 = 21", False),  # right value, wrong operand on the left
        ([], "Step 1: 14 + 7 = 21\nThe answer is 21.", False),  # answer too early
        (["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18"], "The answer is 18.", True),
        (["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 18."], "Step 3: 18 + 1 = 19", False),
        (["Step 1: 14 + 7 = 21"], "Step 2: 21 - 3 = 18", True),
        (["Step 1: 14 + 7 = 21"], "We take away 3 and get 18.", False),
    ],
)
def test_step_is_correct(steps_before, step, expected):
    assert step_is_correct(SHORT, steps_before, step) is expected


def test_success_probability_exact_values():
    config = SimulatedConfig(error_rate=0.2, recovery_rate=0.1)
    assert success_probability(SHORT, [], config) == pytest.approx(0.8 * 0.8 + 0.2 * 0.1)
    assert success_probability(SHORT, ["Step 1: 14 + 7 = 21"], config) == pytest.approx(0.8)
    assert success_probability(SHORT, ["Step 1: 14 + 7 = 22"], config) == pytest.approx(0.1)
    # From a wrong value the chain is correct after k steps with probability 1/3 * (1 - 0.7**k).
    assert success_probability(QUESTION, ["Step 1: 14 + 7 = 22"], config) == pytest.approx((1 - 0.7**3) / 3)
    assert success_probability(SHORT, ["Step 1: 14 + 7 = 22", "Step 2: 21 - 3 = 18"], config) == 1.0
    assert success_probability(SHORT, ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 18."], config) == 1.0
    assert success_probability(SHORT, ["Step 1: 14 + 7 = 21", "Step 2: 21 - 3 = 18\nThe answer is 19."], config) == 0.0


def test_without_errors_every_sample_solves():
    config = SimulatedConfig(error_rate=0.0)
    for problem in generate_problems(40, seed=2):
        assert success_probability(problem.question, [], config) == 1.0
        samples = texts("simulated:error_rate=0", [], n=5, question=problem.question)
        assert {extract_answer(text) for text in samples} == {problem.answer}


def test_always_wrong_without_recovery_never_solves():
    config = SimulatedConfig(error_rate=1.0, recovery_rate=0.0)
    for problem in generate_problems(80, seed=2, min_steps=1):
        assert success_probability(problem.question, [], config) == 0.0
        samples = texts("simulated:error_rate=1,recovery_rate=0", [], n=10, question=problem.question)
        assert problem.answer not in {extract_answer(text) for text in samples}


def test_mistakes_never_land_on_the_true_value():
    """Without recovery a sample solves exactly when it has no wrong step, for every error kind."""
    solved_after_error = 0
    for spec in ("simulated:error_rate=0.5,recovery_rate=0", "simulated:error_rate=0.5,recovery_rate=0.3"):
        for problem in generate_problems(60, seed=9):
            for text in texts(spec, [], n=10, question=problem.question):
                steps = split_steps(text)
                values = parse_question(problem.question).values
                claimed = [read_step(step).computation.result for step in steps]
                first_wrong = next((i for i, value in enumerate(claimed) if value != values[i + 1]), -1)
                assert first_error_index(problem.question, steps) == first_wrong
                solved = extract_answer(text) == problem.answer
                if spec.endswith("recovery_rate=0"):
                    assert solved == (first_wrong == -1)
                else:
                    solved_after_error += solved and first_wrong >= 0
    assert solved_after_error > 0


def _mistake_kind(left: int, operation: Operation, result: int, carried: int, true_operation: Operation) -> str:
    """Which error kind a step's text shows, judged from the value it should have carried on."""
    if left == carried and operation == true_operation:
        exact = Fraction(left) / operation.operand if operation.operator == "/" else apply(left, operation)
        return "arithmetic_slip" if 0 < abs(result - exact) < 4 else "none"
    if left == carried and operation.operator == true_operation.operator and result == apply(left, operation):
        return "wrong_operand"
    if left != carried and operation == true_operation and result == apply(left, operation):
        return "copy_error"
    return "none"


@pytest.mark.parametrize("kind", ["arithmetic_slip", "wrong_operand", "copy_error"])
def test_each_error_kind_writes_the_mistake_it_names(kind):
    """With only one kind weighted, every step shows that kind (or a slip, its fallback)."""
    weights = ",".join(f"{other}={int(other == kind)}" for other in ("arithmetic_slip", "wrong_operand", "copy_error"))
    seen = []
    for problem in generate_problems(40, seed=5, min_steps=4):
        operations = parse_question(problem.question).operations
        for text in texts(f"simulated:error_rate=1,recovery_rate=0,{weights}", [], n=5, question=problem.question):
            carried = parse_question(problem.question).values[0]
            for step, true_operation in zip(split_steps(text), operations, strict=True):
                computation = read_step(step).computation
                seen.append(_mistake_kind(*vars(computation).values(), carried, true_operation))
                carried = computation.result
    assert set(seen) <= {kind, "arithmetic_slip"}
    assert seen.count(kind) > 0.8 * len(seen)


@pytest.mark.parametrize(
    "spec",
    ["simulated:error_rate=0.3,recovery_rate=0.2", "simulated:error_rate=0.5,recovery_rate=0.3,arithmetic_slip=0"],
)
@pytest.mark.parametrize(
    "steps",
    [[], ["Step 1: 14 + 7 = 21"], ["Step 1: 14 + 7 = 22"], ["Step 1: 14 + 7 = 22", "Step 2: 22 - 3 = 19"]],
)
def test_success_probability_matches_the_sampled_rate(spec, steps):
    samples = 2000
    exact = success_probability(QUESTION, steps, parse_spec(spec))
    rate = sum(extract_answer(text) == "27" for text in texts(spec, steps, n=samples)) / samples
    assert abs(rate - exact) <= 4 * math.sqrt(exact * (1 - exact) / samples)


# --- Spec ---------------------------------------------------------------------------------------


def test_spec_defaults_values_and_round_trip():
    assert parse_spec("simulated") == SimulatedConfig()
    assert SimulatedConfig().error_rate == 0.15 and SimulatedConfig().recovery_rate == 0.1
    config = parse_spec("simulated:error_rate=0.3, recovery_rate=0.05,seed=3")
    assert config == SimulatedConfig(error_rate=0.3, recovery_rate=0.05, seed=3)
    name = SimulatedPolicy(config).name
    assert name == (
        "simulated:error_rate=0.3,recovery_rate=0.05,arithmetic_slip=1.0,wrong_operand=1.0,copy_error=1.0,seed=3"
    )
    assert SimulatedPolicy.from_spec(name).config == config


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("embedded", "a simulated policy spec starts with 'simulated', got 'embedded'"),
        ("simulated:bogus=1", "unknown key 'bogus' in 'simulated:bogus=1'; known keys: error_rate, "),
        ("simulated:error_rate", "expected key=value in 'simulated:error_rate', got 'error_rate'"),
        ("simulated:", "expected key=value"),
        ("simulated:error_rate=abc", "error_rate must be a number, got 'abc'"),
        ("simulated:seed=1.5", "seed must be an integer, got '1.5'"),
        ("simulated:error_rate=1.5", "error_rate must be between 0 and 1, got 1.5"),
        ("simulated:recovery_rate=-0.1", "recovery_rate must be between 0 and 1, got -0.1"),
        ("simulated:error_rate=0.1,error_rate=0.2", "key 'error_rate' is given twice"),
        ("simulated:copy_error=-1", "copy_error is a weight and must be a finite number >= 0, got -1.0"),
        ("simulated:arithmetic_slip=0,wrong_operand=0,copy_error=0", "give at least one error kind a positive"),
    ],
)
def test_spec_errors_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        SimulatedPolicy.from_spec(spec)
