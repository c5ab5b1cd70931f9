import pytest
import sympy

from tasks.synthetic import generate_problems
from tasks.verifiers.arith import ArithConfig, ArithVerifier, NotEvaluable, evaluate_exact
from tasks.verifiers.base import StepContext

PROBLEM = StepContext("Mia has 21 apples. She gives away 3.")


@pytest.fixture(scope="module")
def arith() -> ArithVerifier:
    return ArithVerifier()


def test_true_claim_is_valid_with_its_values(arith):
    verdict = arith.verify("Step 1: 21 - 3 = 18", PROBLEM)
    assert (verdict.verifier, verdict.verdict) == ("arith", "valid")
    assert verdict.evidence == "21 - 3 = 18 holds (left 18, right 18)"
    assert verdict.ms > 0


def test_false_claim_is_invalid_with_both_sides(arith):
    verdict = arith.verify("Step 1: 21 - 3 = 17", PROBLEM)
    assert verdict.verdict == "invalid"
    assert verdict.evidence == "21 - 3 = 17 is false: left 18, right 17"


def test_one_false_claim_among_true_ones_is_invalid(arith):
    verdict = arith.verify("14 + 7 = 21, then 21 * 2 = 43", PROBLEM)
    assert verdict.verdict == "invalid"
    assert verdict.evidence == "21 * 2 = 43 is false: left 42, right 43"


def test_inequalities(arith):
    assert arith.verify("Since 12 > 5 we continue", PROBLEM).verdict == "valid"
    assert arith.verify("Since 12 < 5 we continue", PROBLEM).evidence == "12 < 5 is false: left 12, right 5"


def test_exact_rationals_no_floats(arith):
    assert arith.verify("0.1 + 0.2 = 0.3", PROBLEM).verdict == "valid"
    assert arith.verify("1/3 + 1/6 = 1/2", PROBLEM).verdict == "valid"
    assert arith.verify("1/3 = 0.35", PROBLEM).evidence == "1/3 = 0.35 is false: left 1/3, right 7/20"
    # Off by less than 0.5% and one unit of its last digit: a rounding slip is no invalid (gate.py).
    assert arith.verify("1/3 = 0.334", PROBLEM).reason == (
        "1/3 = 0.334 is false: left 1/3, right 167/500, but not called invalid: with decimals, off by 0.000666667 only "
        "(invalid needs more than 0.5% and 1 units)"
    )


def test_a_decimal_that_rounds_the_exact_value_is_read_as_rounded(arith):
    assert arith.verify("1/3 = 0.333", PROBLEM).evidence == "1/3 = 0.333 holds rounded to 3 decimal places (exact 1/3)"
    assert arith.verify("So 47/60 = 0.78 hours", PROBLEM).verdict == "valid"
    truncated = arith.verify("2/3 = 0.66", PROBLEM)
    assert (truncated.verdict, truncated.reason) == ("unknown", "2/3 = 0.66: 33/50 is 2/3 cut short, not rounded")
    assert arith.verify("1,200 / 8,000 = 0.12", PROBLEM).verdict == "invalid"


def test_the_whole_part_of_a_division_is_unknown_not_false(arith):
    verdict = arith.verify("She can fill 7 / 2 = 3 full boxes.", PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", "7 / 2 = 3: 3 is the whole part of 7/2 (a count of full groups?)")
    assert arith.verify("We need 200 / 45 = 5 buses.", PROBLEM).verdict == "unknown"
    assert arith.verify("Step 2: 13 / 2 = 7", PROBLEM).evidence == "13 / 2 = 7 is false: left 13/2, right 7"
    assert arith.verify("7 * 8 = 54", PROBLEM).verdict == "invalid"
    assert arith.verify("3,600 / 45 = 90", PROBLEM).verdict == "invalid"


def test_latex(arith):
    assert arith.verify("$\\frac{1}{2} \\times 8 = 4$", PROBLEM).verdict == "valid"
    assert (
        arith.verify("$3 \\cdot 4 = 13$", PROBLEM).evidence == "3 \\cdot 4 = 13 is false: left 12, right 13"
    )
    assert arith.verify("$\\sqrt{16} = 4$", PROBLEM).verdict == "valid"


def test_no_claims_is_unknown_with_reason(arith):
    verdict = arith.verify("Now we subtract the apples she gave away.", PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", "no checkable claims in step")


def test_unparseable_is_unknown_never_invalid(arith):
    verdict = arith.verify("half of 50 = 26", PROBLEM)
    assert verdict.verdict == "unknown"
    assert verdict.reason == "cannot parse '50 = 26': arithmetic continues in words ('of')"
    assert arith.verify("20% of 50 = 11", PROBLEM).evidence == "20% * 50 = 11 is false: left 10, right 11"


def test_free_symbol_is_unknown(arith):
    verdict = arith.verify("x + 2 = 14", PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", "x + 2 = 14: free symbol x")


def test_assignments_bind_within_the_step_and_from_context(arith):
    assert arith.verify("x = 3*4 = 12, so x + 2 = 14", PROBLEM).verdict == "valid"
    context = StepContext("Let x = 12.", ("y = 3",))
    assert arith.verify("x * y = 36", context).verdict == "valid"
    assert arith.verify("so y * 2 = 7", context).evidence == "y * 2 = 7 is false: left 6, right 7"
    # With no word deriving it, a claim false only by an earlier step's value may use the name anew.
    assert arith.verify("y * 2 = 7", context).verdict == "unknown"
    # An assignment to a bound symbol is checked, not a new definition.
    assert arith.verify("x = 13", context).evidence == "x = 13 is false: left 12, right 13"


def test_values_it_will_not_compute_are_unknown(arith):
    assert arith.verify("2^{100000000} = 5", PROBLEM).reason == (
        "2^{100000000} = 5: value too large to evaluate (2^100000000)"
    )
    assert (
        arith.verify("$\\sqrt{2} \\equiv 1 \\pmod 3$", PROBLEM).reason == "\\sqrt{2} ≡ 1: irrational value (2^(1/2))"
    )
    # An = with an irrational side is read as an approximation.
    assert arith.verify("$\\sqrt{2} = 1.41$", PROBLEM).evidence == "\\sqrt{2} = 1.41 holds approximately (left 1.41421, right 1.41)"
    assert arith.verify("12 / 0 = 5", PROBLEM).reason == "12 / 0 = 5: division by zero"


def test_hard_timeout_is_unknown():
    verdict = ArithVerifier(ArithConfig(timeout_ms=0)).verify("21 - 3 = 18", PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", "timeout after 0 ms")


def test_evaluate_exact():
    half = sympy.Mul(sympy.Integer(1), sympy.Pow(sympy.Integer(2), -1, evaluate=False), evaluate=False)
    assert evaluate_exact(half) == sympy.Rational(1, 2)
    assert evaluate_exact(sympy.Symbol("x") + 1, {sympy.Symbol("x"): sympy.Integer(2)}) == 3
    assert evaluate_exact(sympy.Pow(sympy.Integer(27), sympy.Rational(1, 3), evaluate=False)) == 3
    with pytest.raises(NotEvaluable, match="has no exact rational value"):
        evaluate_exact(sympy.pi)


def test_every_synthetic_reference_step_is_valid_and_a_wrong_result_is_invalid(arith):
    for problem in generate_problems(20, seed=3):
        steps = problem.reference_steps
        for index, step in enumerate(steps):
            context = StepContext(problem.question, steps[:index])
            assert arith.verify(step, context).verdict == "valid", step
        first = steps[0].split("\n")[0]
        wrong = first[: first.rindex("=")] + f"= {int(first.rsplit('=', 1)[1]) + 1}"
        assert arith.verify(wrong, StepContext(problem.question)).verdict == "invalid", wrong


# --- Roles: only assertions are judged ----------------------------------------------------------


def test_case_values_are_never_checked_against_each_other(arith):
    problem = "Find all positive integers $n$ such that $3^n < 10n$."
    steps = ("For $n = 1$ we get $3 < 10$.", "For $n = 2$, the inequality reads $9 < 20$.")
    assert [arith.verify(s, StepContext(problem, steps[:i])).verdict for i, s in enumerate(steps)] == ["valid", "valid"]
    verdict = arith.verify("When $n = 4$, $n^2 + 3n + 1 = 16 + 12 + 1 = 27$.", StepContext(problem, steps))
    assert (verdict.verdict, verdict.evidence) == ("invalid", "16 + 12 + 1 = 27 is false: left 29, right 27")


def test_a_name_bound_again_takes_a_new_value_and_is_never_invalid(arith):
    context = StepContext("q", ("Let $S = 8 \\times 12 = 96$.",))
    assert arith.verify("After removing 20, $S = 96 - 20 = 76$.", context).verdict == "valid"
    verdict = arith.verify("So $S = 70$.", context)
    assert (verdict.verdict, verdict.reason) == ("unknown", "no checkable claims in step (S = 70: S takes a new value, 70)")


def test_rejected_claims_are_right_when_false(arith):
    assert arith.verify("For $n = 4$: $81 < 40$ is false.", PROBLEM).evidence == "81 < 40: rejected, and indeed false"
    verdict = arith.verify("Then $8 < 40$, which is impossible.", PROBLEM)
    assert (verdict.verdict, verdict.reason) == (
        "unknown", "8 < 40: the step rejects it, but it holds (perhaps it rejects the case)"
    )


def test_congruences_and_approximations(arith):
    assert arith.verify("$4^3 = 64 \\equiv 1 \\pmod 7$", PROBLEM).verdict == "valid"
    assert arith.verify("$4^3 = 64 \\equiv 3 \\pmod 7$", PROBLEM).evidence == "64 ≡ 3 (mod 7) is false: left 64, right 3"
    assert arith.verify("so 1024 mod 7 = 2", PROBLEM).evidence == "1024 mod 7 = 2 holds (left 2, right 2)"
    assert arith.verify("$3^4 \\equiv 1$", PROBLEM).reason == "3^4 ≡ 1: a congruence with no modulus"
    assert arith.verify("$\\frac{25}{\\pi} \\approx 7.96$", PROBLEM).verdict == "valid"
    assert arith.verify("$1.08^5 \\approx 1.3605$", PROBLEM).verdict == "invalid"
    assert arith.verify("$\\pi r^2 = 3.14 \\times 25 = 78.5$ with $r = 5$", PROBLEM).verdict != "invalid"


def test_a_function_the_problem_defines_is_evaluated(arith):
    context = StepContext("Let $f(x) = 2x^2 - 3x + 1$. Compute $f(3)$.")
    assert arith.verify("$f(3) = 2 \\cdot 9 - 9 + 1 = 10$.", context).verdict == "valid"
    assert arith.verify("$f(3) = 11$.", context).evidence == "f(3) = 11 is false: left 10, right 11"


def test_plain_computations_keep_their_verdicts(arith):
    for text in ("2 + 3 = 5", "so 12 × 4 = 48 apples", "$\\frac{3}{4}\\cdot 8 = 6$", "$2\\binom{4}{2} = 12$",
                 "$3.5 \\text{ hours} \\times 60 \\text{ minutes/hour} = 210 \\text{ minutes}$"):
        assert arith.verify(text, PROBLEM).verdict == "valid", text
    for text in ("7 × 8 = 54", "$7 \\times 8 = 54$", "$\\binom{4}{2}\\binom{6}{1} = 12$",
                 "$2 \\text{ hours} \\times 60 \\text{ minutes/hour} = 100 \\text{ minutes}$"):
        assert arith.verify(text, PROBLEM).verdict == "invalid", text


def test_conversions_in_latex_text_are_never_invalid(arith):
    verdict = arith.verify("$3.5 \\text{ hours} = 210 \\text{ minutes}$", PROBLEM)
    assert verdict.verdict == "unknown"
    assert verdict.reason == "3.5 hour = 210 minut: left 7/2 and right 210 are in different units (a conversion?)"


def test_a_computing_chain_uses_earlier_values_and_a_bare_claim_does_not_alone(arith):
    earlier = StepContext("q", ("The cost is $c = 12$.",))
    assert arith.verify("So $2c = 30$.", earlier).verdict == "invalid"
    assert arith.verify("For the other shop, $2c = 30$.", earlier).verdict == "unknown"
    assert arith.verify("$d = 2c = 30$.", earlier).verdict == "invalid"
