"""The invalid gate (tasks/verifiers/gate.py): each rule, on its own and through arith and z3."""

import pytest
from sympy import Integer, Rational

from tasks.verifiers.arith import ArithVerifier
from tasks.verifiers.base import StepContext
from tasks.verifiers.claims import parse_span
from tasks.verifiers.gate import (
    Finding,
    invalid_blocked,
    not_asserted,
    not_read_without_doubt,
    not_self_contained,
    rebound_names,
    within_precision,
)
from tasks.verifiers.z3_verifier import Z3Verifier

PLAIN = StepContext("Compute.")


@pytest.fixture(scope="module", params=["arith", "z3"])
def verifier(request):
    return ArithVerifier() if request.param == "arith" else Z3Verifier()


def claim(text: str, latex: bool = False):
    return parse_span(text, latex)[0]


# ------------------------------------------------------------------ plain errors stay invalid


def test_plain_wrong_arithmetic_stays_invalid(verifier):
    verdict = verifier.verify("Then 7 × 8 = 54.", PLAIN)
    assert (verdict.verdict, verdict.evidence) == ("invalid", "7 * 8 = 54 is false: left 56, right 54")


def test_plain_wrong_latex_and_decimals_stay_invalid(verifier):
    assert verifier.verify(r"So $\frac{20}{56} = \frac{5}{12}$.", PLAIN).verdict == "invalid"
    assert verifier.verify("So the tax is 0.12 × 311.75 = 37.14.", PLAIN).verdict == "invalid"
    assert verifier.verify(r"So $2^{50} \equiv 3 \pmod 5$.", PLAIN).verdict == "invalid"


def test_the_gate_passes_a_plain_finding():
    assert invalid_blocked(Finding(claim("7 * 8 = 54"), ("then", "."), (Integer(56), Integer(54)))) is None


# ------------------------------------------------------------------ rule 1: asserted plainly


@pytest.mark.parametrize("step, sign", [
    ("That is 16 < 5, which is clearly not so.", "'not'"),
    ("Then 4 + 5 = 10 gives a contradiction with the count.", "'contradiction'"),
    ("The sum 4 + 5 = 10 isn't right; 4 + 5 = 9.", '"isn\'t"'),
    ("If we add them we get 4 + 5 = 10.", "'if'"),
    ("Doubling would give 2 × 6 = 13 here.", "'would'"),
    ("So 3^4 = 80 and 80 ≠ 81.", "'≠'"),
])
def test_a_relation_in_a_sentence_that_does_not_assert_it_is_unknown_with_the_sign(verifier, step, sign):
    verdict = verifier.verify(step, PLAIN)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith(f"but not called invalid: its sentence says {sign}: not asserted plainly")


def test_a_negated_property_of_a_value_is_no_denial(verifier):
    # "which is not prime" says something of 27, not of the relation.
    assert verifier.verify("So $16 + 12 + 1 = 27$, which is not prime.", PLAIN).verdict == "invalid"
    assert not_asserted(["which", "is", "not", "a", "perfect", "square"]) is None
    assert not_asserted(["which", "is", "not", "true"]) == "its sentence says 'not': not asserted plainly"


def test_the_gate_never_touches_a_valid_verdict(verifier):
    assert verifier.verify("It is not hard to see that 7 × 8 = 56.", PLAIN).verdict == "valid"
    assert verifier.verify("It is not hard to see that 7 × 8 = 55.", PLAIN).verdict == "unknown"


def test_a_question_mark_blocks():
    assert not_asserted(["is", "it", "?"]) == "its sentence says '?': not asserted plainly"


# ------------------------------------------------------------------ rule 2: self-contained names


def test_a_name_indexed_by_a_letter_is_unknown():
    finding = Finding(claim("x_n + 1 = 5"), (), (Integer(4), Integer(5)))
    assert not_self_contained(finding) == "x_n is indexed by a letter: the index takes values"
    assert not_self_contained(Finding(claim("x_4 + 1 = 5"), (), (Integer(4), Integer(5)))) is None


def test_a_value_from_an_earlier_step_for_a_name_with_two_values_is_unknown(verifier):
    # a is 4, then 6: "a + 1 = 5" is false with the latest value and true with the first.
    context = StepContext("Find a.", ("So $a = 4$.", "Then $a = 6$."))
    verdict = verifier.verify("So we have $a + 1 = 5$.", context)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith(
        "but not called invalid: a takes its value from an earlier step and is given more than one value in the solution"
    )
    assert rebound_names({"x": frozenset({Integer(12), Integer(13)}), "y": frozenset({Integer(1)})},
                         claim("x + y = 3")) == frozenset({"x"})


def test_a_claim_the_step_and_the_problem_decide_alone_is_self_contained(verifier):
    # x is 12 in the problem and 13 in the step: the problem's value decides.
    assert verifier.verify("x = 13", StepContext("Let x = 12.")).verdict == "invalid"
    case_two = StepContext("Solve $|x + 4| = 9$.", ("Case 1: $x + 4 = 9$, so $x = 5$.",))
    if verifier.name == "z3":
        assert verifier.verify("Case 2: $x + 4 = -9$, so $x = -5$.", case_two).verdict == "invalid"


def test_a_name_bound_once_still_decides(verifier):
    verdict = verifier.verify("So x = 3, then 2x = 7.", PLAIN)
    assert verdict.verdict == "invalid"
    context = StepContext("Let x = 12.", ("y = 3",))
    assert verifier.verify("so y * 2 = 7", context).verdict == "invalid"


def test_a_value_from_an_earlier_step_in_a_sentence_that_opens_a_case_is_unknown(verifier):
    context = StepContext("Find a.", ("So $a = 4$.",))
    verdict = verifier.verify("For the next term, we have $a + 1 = 7$.", context)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith(
        "but not called invalid: a name takes its value from an earlier step, and its sentence opens a case ('for')"
    )
    assert verifier.verify("So we have $a + 1 = 7$.", context).verdict == "invalid"


def test_z3_needs_the_premises_to_give_each_side_one_value():
    # x > 1 does not fix x: 2x > 2 is refuted by nothing, but x < 0 is refuted with no value of x.
    context = StepContext("Solve 3x - 3 > 0.")
    verdict = Z3Verifier().verify("So $x < 0$.", context)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith("but not called invalid: its names have no single exact value")
    # Vieta: a + b = 5 and ab = 6 fix a^2 + b^2 = 13, though not a and b themselves.
    vieta = StepContext("The roots a and b of t^2 - 5t + 6 = 0.", ("By Vieta, $a + b = 5$.", "Also $ab = 6$."))
    assert Z3Verifier().verify("Then $(a + b)^2 - 2ab = 14$.", vieta).verdict == "invalid"


def test_a_false_identity_stays_invalid_in_z3():
    verdict = Z3Verifier().verify("Note that $n^2 + 15 = (n + 3)(n - 3) + 6$.", PLAIN)
    assert verdict.verdict == "invalid"


# ------------------------------------------------------------------ rule 3: stated precision


def test_decimals_need_more_than_half_a_percent_and_one_unit():
    near = Finding(claim("0.33 * 90 = 29.8"), (), (Rational(297, 10), Rational(298, 10)))
    assert within_precision(near) == "with decimals, off by 0.1 only (invalid needs more than 0.5% and 1 units)"
    far = Finding(claim("0.33 * 90 = 31.5"), (), (Rational(297, 10), Rational(315, 10)))
    assert within_precision(far) is None


def test_an_approximation_needs_more_than_five_percent(verifier):
    verdict = verifier.verify("So 1/3 of 90 is about 0.33 × 90 = 30.", PLAIN)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith("but not called invalid: with an approximation, off by 0.3 only "
                                   "(invalid needs more than 5.0% and 5 units)")
    assert verifier.verify(r"So $1.08^5 \approx 1.3605$.", PLAIN).verdict == "invalid"


# ------------------------------------------------------------------ rule 4: read without doubt


def test_a_bracketed_number_beside_a_number_is_unknown(verifier):
    verdict = verifier.verify("The value is 2(5) = 12.", PLAIN)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith(
        "but not called invalid: '2(5)': a bracket beside a number may be a product, a label or a list marker"
    )
    product = Finding(claim("(n + 3)(n - 3) = 5"), (), (Integer(0), Integer(5)))
    assert not_read_without_doubt(product) is None


def test_a_function_value_read_elsewhere_or_a_letter_before_a_bracket_is_unknown(verifier):
    context = StepContext("Find g(2) + g(3) for the function g of the table.", ("$g(2) = 0$.", "$g(3) = 27 - 12 = 16$."))
    verdict = verifier.verify("So $g(2) + g(3) = 0 + 16 = 16$.", context)
    assert verdict.verdict == "unknown"
    assert "but not called invalid: g(2) may be a function's value read elsewhere" in verdict.reason
    product = Finding(claim("p(4 + 1) = 12"), (), (Integer(10), Integer(12)))
    assert not_read_without_doubt(product) == "'p(' may be a function applied, or a product"


def test_a_greek_letter_before_a_bracket_is_unknown(verifier):
    # The LaTeX parser reads `\phi(5)` as an application and `\phi(3^2)` as phi times 9, so the
    # first relation gives phi a value and the second is "refuted" by it.
    verdict = verifier.verify(r"So $\phi(2^2) = 2$ and $\phi(3^2) = 6$.", PLAIN)
    assert verdict.verdict == "unknown"
    if verifier.name == "z3":
        assert verdict.reason.endswith("but not called invalid: '\\phi(' may be a function applied, or a product")
    product = Finding(claim(r"\tau(3^2) = 3", latex=True), (), (Integer(9), Integer(3)))
    assert not_read_without_doubt(product) == "'\\tau(' may be a function applied, or a product"
    # `\pi` is a number, not a name: a bracket after it is a product, and decides.
    circle = Finding(claim(r"\pi(2^2) = 4\pi", latex=True), (), (Integer(4), Integer(4)))
    assert not_read_without_doubt(circle) is None


def test_a_function_the_problem_defines_still_decides(verifier):
    context = StepContext("Let $f(x) = 2x^2 - 3x + 1$. Compute $f(3)$.")
    assert verifier.verify("$f(3) = 11$.", context).verdict == "invalid"


def test_latex_beyond_plain_arithmetic_is_unknown(verifier):
    verdict = verifier.verify(r"So $\gcd(252, 198) = 2$.", PLAIN)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith("but not called invalid: '\\gcd' is read by a general LaTeX parser, not exactly")
    greek = Finding(claim(r"\alpha + \beta = 4", latex=True), (), (Integer(3), Integer(4)))
    assert not_read_without_doubt(greek) is None


def test_a_congruence_whose_modulus_another_sentence_writes_is_unknown(verifier):
    verdict = verifier.verify(r"So $2^{10} \equiv 2 \pmod 7$. Also $10 \equiv 1$.", PLAIN)
    assert verdict.verdict == "unknown"
    assert verdict.reason.endswith("but not called invalid: its modulus (7) is not written in its sentence")


def test_a_side_with_no_exact_value_is_unknown():
    assert not_read_without_doubt(Finding(claim("x = 5"), (), None)) == "a side has no exact value"
