from tasks.verifiers.base import StepContext
from tasks.verifiers.knowledge import (
    ALTERNATIVES,
    BIND,
    CHECK,
    NOTE,
    PREMISE,
    REBIND,
    REJECT,
    display,
    facts_before,
    plan_step,
)


def modes(problem: str, steps: tuple[str, ...], step: str) -> list[tuple[str, str]]:
    return [(item.claim.text, item.mode) for item in plan_step(StepContext(problem, steps), step).items]


def facts(problem: str, steps: tuple[str, ...] = ()) -> list[str]:
    return [str(fact.claim.relation) for fact in facts_before(StepContext(problem, steps))]


def test_roles_become_modes():
    assert modes("q", (), "For $n = 2$: $2^2 = 4$, and $5 > 9$ is false; we need $m < 3$.") == [
        ("n = 2", PREMISE), ("2^2 = 4", CHECK), ("5 > 9", REJECT), ("m < 3", NOTE)
    ]
    assert modes("q", (), "so $u = 1$ or $u = 4$") == [("u = 1", ALTERNATIVES), ("u = 4", ALTERNATIVES)]


def test_a_free_name_binds_and_a_bound_one_rebinds_under_a_new_version():
    items = plan_step(StepContext("q", ("Let $S$ be the sum: $S = 8 \\cdot 12 = 96$.",)), "Now $S = 96 - 20 = 76$.").items
    rebind = items[0]
    assert (rebind.mode, str(rebind.claim.lhs), str(rebind.previous.claim.lhs)) == (REBIND, "S'2", "S'1")
    assert plan_step(StepContext("q"), "$t = 3 \\cdot 4$").items[0].mode == BIND


def test_a_name_the_problem_binds_is_checked_not_rebound():
    assert modes("Let x = 12.", (), "x = 13") == [("x = 13", CHECK)]


def test_a_constrained_name_is_checked():
    assert modes("q", ("Then $2y = 8$.",), "so $y = 5$") == [("y = 5", CHECK)]


def test_cases_do_not_reach_later_steps_and_scope_zero_does():
    assert facts("q", ("We have $a = 2$. If $b = 3$, then $a + b = 5$.",)) == ["Eq(a'1, 2)"]


def test_an_assumption_on_a_constrained_name_keeps_the_link():
    plan = plan_step(StepContext("q", ("Let $u = x^2$.",)), "If $u = 1$, then $x^2 = 1$.")
    assumption = plan.items[0]
    assert [str(fact.claim.relation) for fact in assumption.adds] == ["Eq(u'2, 1)", "Eq(u'2, u'1)"]


def test_sibling_cases_each_start_from_scope_zero():
    items = plan_step(StepContext("q"), "If $d = 1$, $d + 1 = 2$. If $d = 2$, $d + 1 = 3$.").items
    assert [(item.claim.text, item.fresh_scope) for item in items] == [
        ("d = 1", True), ("d + 1 = 2", False), ("d = 2", True), ("d + 1 = 3", False)
    ]
    assert [display(str(item.claim.relation)) for item in items] == ["Eq(d, 1)", "Eq(d + 1, 2)", "Eq(d, 2)", "Eq(d + 1, 3)"]


def test_the_problem_gives_definitions_assumptions_and_values_not_questions_or_descriptions():
    assert facts("Let $f(x) = x^2 + 1$ and $a_1 = 7$. Solve $2y + 3 = 11$.") == ["Eq(a_1'1, 7)", "Eq(2*y + 3, 11)"]
    assert facts("Find all $n$ such that $3^n < 10n$. For which $k$ is $k^2 > 5$?") == []
    assert facts("The roots of $x^2 - 9x + 14 = 0$ are $p$ and $q$.") == []


def test_defined_functions_are_expanded_and_undefined_ones_are_names():
    plan = plan_step(StepContext("Let $g(x) = x^3 - 4x$."), "$g(3) = 27 - 12 = 15$.")
    assert str(plan.items[0].claim.lhs) == "15"
    plan = plan_step(StepContext("q"), "$h(2) = 5$.")
    assert (str(plan.items[0].claim.lhs), plan.items[0].mode) == ("h(2)'1", BIND)


def test_display_drops_version_marks():
    assert display("Eq(x'2, y'10 + 1)") == "Eq(x, y + 1)"


def test_a_sibling_case_does_not_see_the_steps_of_the_case_before_it():
    steps = ("**Case $n > 0$:** then $x = \\frac{17}{n}$.", "So $n = 4$ and $x = \\frac{17}{4}$.")
    base = [str(fact.claim.relation) for fact in plan_step(StepContext("q", steps), "**Case $n < 0$:** ...").base]
    assert base == []
    # A step after the cases, or one opening `Case 1`, sees them as before.
    assert facts("q", steps) == ["Eq(n'1, 4)", "Eq(x'1, 17/4)"]


def test_an_equation_about_a_defined_function_is_no_new_definition():
    assert modes("Let $g(x) = 2x + 1$. Solve $g(x) = 7$.", (), "Also $g(0) = 1$.") == [("g(0) = 1", CHECK)]
    assert facts("Let $g(x) = 2x + 1$. Solve $g(x) = 7$.") == ["Eq(2*x + 1, 7)"]


def test_a_name_introduced_in_words_gets_a_new_version():
    steps = ("Then $S = 1023$.", "Now let $S$ denote instead the sum $1 + 3 + 9 + 27 = 40$.")
    assert [str(item.claim.lhs) for item in plan_step(StepContext("q", steps), "Then $3S = 120$.").items] == ["3*S'2"]


PIECES = "Let $f(x) = 2x + 1$ if $x < 0$ and $f(x) = x^2$ if $x \\ge 0$. Find $f(-3) + f(4)$."


def test_a_function_defined_piece_by_piece_is_not_expanded():
    # Expanding the first piece made the true `f(4) = 4^2` false (f(4) read as 9).
    assert modes(PIECES, (), "$f(4) = 4^2 = 16$") == [("f(4) = 4^2", BIND), ("4^2 = 16", CHECK)]
    assert facts(PIECES) == []
    ranged = "Let $g(x) = x^2$ for $x \\ge 0$. Find $g(3)$."
    assert modes(ranged, (), "$g(3) = 10$") == [("g(3) = 10", BIND)]
    # One definition, or one with an equation posed about it, is still expanded.
    assert modes("Let $h(x) = x^2 + 1$ for all real $x$.", (), "$h(2) = 6$") == [("h(2) = 6", CHECK)]
    assert modes("Let $g(x) = 2x + 1$. Solve $g(x) = x^2$.", (), "$g(3) = 8$") == [("g(3) = 8", CHECK)]
