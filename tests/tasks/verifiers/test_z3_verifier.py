import pytest

from tasks.verifiers.base import StepContext
from tasks.verifiers.arith import ANEW
from tasks.verifiers.z3_verifier import Z3Config, Z3Verifier

PROBLEM = StepContext("Mia has 21 apples.")


@pytest.fixture(scope="module")
def z3_verifier() -> Z3Verifier:
    return Z3Verifier()


def test_closed_claims_are_evaluated_exactly_without_premises(z3_verifier):
    verdict = z3_verifier.verify("Step 1: 21 - 3 = 18", PROBLEM)
    assert (verdict.verifier, verdict.verdict) == ("z3", "valid")
    assert verdict.evidence == "21 - 3 = 18 holds (left 18, right 18)"
    verdict = z3_verifier.verify("Step 1: 21 - 3 = 17", PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("invalid", "21 - 3 = 17 is false: left 18, right 17")


def test_claim_contradicting_premises_is_invalid_with_a_model_of_the_premises_it_shares_names_with():
    context = StepContext("Let x = 12.", ("y = 3",))
    verdict = Z3Verifier().verify("so y * 2 = 7", context)
    assert verdict.verdict == "invalid"
    assert verdict.evidence == "y * 2 = 7 contradicts the premises; model of premises and not claim: [y = 3]"


def test_a_claim_no_word_derives_that_only_earlier_steps_contradict_is_unknown():
    # "For the second number, 3n = 27" after "n = 6": the name may be used anew.
    context = StepContext("A number doubled plus 5 is 17; another tripled is 27.",
                          ("Let it be n. So 2n + 5 = 17 and n = 6.",))
    verdict = Z3Verifier().verify("For the second number, $3n = 27$.", context)
    assert (verdict.verdict, verdict.reason.split(": ", 1)[1]) == ("unknown", ANEW)
    assert Z3Verifier().verify("Then $3n = 27$.", context).verdict == "invalid"
    # The problem's own values still decide: "x = 13" after "Let x = 12." is invalid.
    assert Z3Verifier().verify("x = 13", StepContext("Let x = 12.")).verdict == "invalid"


def test_entailed_by_premises_is_valid(z3_verifier):
    assert z3_verifier.verify("x * y = 36", StepContext("Let x = 12.", ("y = 3",))).verdict == "valid"
    solve = StepContext("Solve 2x + 3 = 11.")
    assert z3_verifier.verify("x = 4", solve).verdict == "valid"
    assert z3_verifier.verify("so x > 3", solve).verdict == "valid"
    wrong = z3_verifier.verify("x = 5", solve)
    assert (wrong.verdict, wrong.evidence) == (
        "invalid",
        "x = 5 contradicts the premises; model of premises and not claim: [x = 4]",
    )


def test_definitions_inside_the_step_are_premises(z3_verifier):
    assert z3_verifier.verify("x = 3*4 = 12, so x + 2 = 14", PROBLEM).verdict == "valid"
    verdict = z3_verifier.verify("x = 3*4 = 12, so x + 2 = 15", PROBLEM)
    assert (
        verdict.evidence == "x + 2 = 15 contradicts the premises; model of premises and not claim: [x = 12]"
    )


def test_int_sort_makes_fractional_values_impossible():
    context = StepContext("Solve 2x + 3 = 10.")
    assert Z3Verifier().verify("x = 7/2", context).verdict == "valid"
    verdict = Z3Verifier(Z3Config(symbol_sort="int")).verify("x = 7/2", context)
    assert (verdict.verdict, verdict.reason) == (
        "unknown",
        "x = 7/2: premises are inconsistent: earlier relations contradict each other",
    )


def test_neither_entailed_nor_refuted_is_unknown(z3_verifier):
    verdict = z3_verifier.verify("x + 2 = 14", PROBLEM)
    assert verdict.verdict == "unknown"
    assert verdict.reason == (
        "x + 2 = 14 neither follows from nor contradicts the premises (counterexample [x = 0])"
    )


def test_unsupported_form_is_unknown(z3_verifier):
    verdict = z3_verifier.verify("x^y = 3", PROBLEM)
    assert (verdict.verdict, verdict.reason) == (
        "unknown",
        "x^y = 3: unsupported form: symbolic exponent in x**y",
    )


def test_no_claims_is_unknown(z3_verifier):
    assert z3_verifier.verify("She gives some away.", PROBLEM).reason == "no checkable claims in step"


def test_solver_timeout_is_unknown():
    # x^3 + y^3 + z^3 = 42 over the integers is famously hard: z3 cannot settle it in 100 ms.
    verifier = Z3Verifier(Z3Config(symbol_sort="int", call_timeout_ms=100))
    verdict = verifier.verify("x > 10", StepContext("Suppose x^3 + y^3 + z^3 = 42."))
    assert (verdict.verdict, verdict.reason) == ("unknown", "x > 10: z3 timeout after 100 ms")


def test_step_budget_is_a_hard_timeout():
    verifier = Z3Verifier(Z3Config(symbol_sort="int", call_timeout_ms=100, timeout_ms=150))
    verdict = verifier.verify("x > 10, y > 3 and z > 1", StepContext("Suppose x^3 + y^3 + z^3 = 42."))
    assert (verdict.verdict, verdict.reason) == ("unknown", "timeout after 150 ms")
    assert verdict.ms < 1000


def test_bad_config_fails_fast():
    with pytest.raises(ValueError, match="symbol_sort must be 'real' or 'int'"):
        Z3Config(symbol_sort="bool")


def test_each_case_is_judged_against_its_own_assumption(z3_verifier):
    problem = "Solve $|2x - 3| = 7$."
    steps = ("Case 1: $2x - 3 = 7$. Then $2x = 10$, so $x = 5$.", "Case 2: $2x - 3 = -7$. Then $2x = -4$, so $x = -2$.")
    assert [z3_verifier.verify(s, StepContext(problem, steps[:i])).verdict for i, s in enumerate(steps)] == [
        "valid", "valid"
    ]
    assert z3_verifier.verify("The solutions are $x = 5$ and $x = -2$.", StepContext(problem, steps)).evidence == (
        "x = 5 or x = -2 follows from the premises"
    )
    # x was 5 in case 1; the slip is decided by its own case's premise alone, so the gate lets it stand.
    slip = z3_verifier.verify("Case 2: $2x - 3 = -7$, so $x = -3$.", StepContext(problem, steps[:1]))
    assert (slip.verdict, slip.evidence) == (
        "invalid", "x = -3 contradicts the premises; model of premises and not claim: [x = -2]"
    )


def test_a_substitution_is_an_assumption_and_what_follows_is_judged(z3_verifier):
    context = StepContext("Solve the system $2x + y = 11$ and $x - y = 1$.", ("Adding: $3x = 12$, so $x = 4$.",))
    verdict = z3_verifier.verify("Substituting $x = 4$ into $x - y = 1$: $4 - y = 1$, so $y = 3$.", context)
    assert verdict.verdict == "valid"
    assert z3_verifier.verify("so $y = 2$", context).verdict == "invalid"


def test_a_relation_the_problem_only_describes_is_no_premise(z3_verifier):
    context = StepContext("The line $y = 2x + 1$ meets the parabola $y = x^2$.")
    assert z3_verifier.verify("$y = 2(0) + 1 = 1$", context).verdict == "valid"


def test_a_claim_no_real_value_satisfies_is_unknown_unless_a_false_identity():
    verdict = Z3Verifier().verify("Since $i^2 = -1$, we have", StepContext("Compute $(1 + i)^2$."))
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith("on its own: another number domain (complex numbers?)")
    identity = Z3Verifier().verify("Note that $n^2 + 15 = (n + 3)(n - 3) + 6$.", StepContext("q"))
    assert identity.verdict == "invalid"


def test_a_refutation_only_the_reals_give_is_unknown(z3_verifier):
    # Over the reals |w - v| = |2i| = 2 makes i = 1 or -1, so wv = 1 - i^2 = 0 and `wv = 2` is
    # refuted; with complex values (i^2 = -1) it holds, and the text means those.
    context = StepContext("Let $w = 1 + i$ and $v = 1 - i$. Compute $wv$.", ("Then $w - v = 2i$, so $|w - v| = 2$.",))
    verdict = z3_verifier.verify("So $wv = 2$.", context)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith(
        "but not called invalid: it holds with complex values of its names (z3 reads names as reals; "
        "the text may mean complex numbers)"
    )
    # Refuted over the complex numbers too (wv = 3 needs i^2 = -2, but |i| = 1): still invalid.
    assert z3_verifier.verify("So $wv = 3$.", context).verdict == "invalid"
    assert z3_verifier.verify("So $w + v = 3$.", context).verdict == "invalid"


def test_an_order_relation_keeps_its_sides_real_when_weighed_over_the_complex_numbers(z3_verifier):
    # x > 0 sends the weighing to z3 (names as pairs of reals), where it keeps x real: x = 2.
    assert z3_verifier.verify("So $x + 1 = -1$.", StepContext("Find $x$ with $x^2 = 4$ and $x > 0$.")).verdict == "invalid"
    # Equations only: weighed by a Gröbner basis, and x = 3 over the complex numbers too.
    context = StepContext("Real numbers x and y satisfy $x + y = 2$ and $x - y = 4$.")
    assert z3_verifier.verify("Adding, $2x = 6$, so $x^2 = 10$.", context).verdict == "invalid"


def test_a_computing_chain_is_judged_with_earlier_values():
    steps = ("$a_4 = a_3^2 - a_3 + 1 = 49 - 7 + 1 = 43$.",)
    verdict = Z3Verifier().verify("$a_5 = a_4^2 - a_4 + 1 = 1859 - 43 + 1 = 1817$.", StepContext("q", steps))
    assert verdict.verdict == "invalid"
