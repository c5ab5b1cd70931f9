from tasks.answers import answers_match, extract_answer
from tasks.synthetic import Operation, apply, generate_problems
from tasks.text_format import training_text


def test_same_seed_same_problems():
    first = generate_problems(20, seed=3)
    second = generate_problems(20, seed=3)
    assert [p.problem_id for p in first] == [p.problem_id for p in second]
    assert [p.problem_id for p in first] != [p.problem_id for p in generate_problems(20, seed=4)]


def test_steps_recompute_exactly_to_the_answer():
    for problem in generate_problems(200, seed=11):
        assert 2 <= len(problem.reference_steps) <= 6
        value = None
        for step in problem.reference_steps:
            line = step.splitlines()[0]
            left, operator, operand, _, result = line.split(": ", 1)[1].split()
            assert value is None or int(left) == value
            value = apply(int(left), Operation(operator, int(operand)))
            assert value == int(result)
        assert str(value) == problem.answer
        assert answers_match(extract_answer(training_text(problem)), problem.answer)


def test_every_operator_appears_and_division_is_exact():
    operators = set()
    for problem in generate_problems(100, seed=0):
        for step in problem.reference_steps:
            operators.add(step.split()[3])
    assert operators == {"+", "-", "*", "/"}


def test_step_count_bounds_are_respected():
    problems = generate_problems(30, seed=1, min_steps=3, max_steps=3)
    assert {len(p.reference_steps) for p in problems} == {3}
