import pytest

from tasks.verifiers.arith import ArithVerifier
from tasks.verifiers.base import StepContext
from tasks.verifiers.units import mark_units, unit_name

PROBLEM = StepContext("q")


@pytest.fixture(scope="module")
def arith() -> ArithVerifier:
    return ArithVerifier()


def test_units_inside_the_arithmetic_become_unit_symbols():
    assert mark_units("so 150 km + 110 km = 260 km in total") == (
        "so (150 * unit_km) + (110 * unit_km) = (260 * unit_km) in total"
    )
    assert mark_units("12 * 2/3 h = 8") == "12 * ((2/3) * unit_h) = 8"
    assert mark_units("48 muffins * 3 per muffin = 144") == "(48 * unit_muffin) * (3 / unit_muffin) = 144"


def test_spans_with_units_only_after_the_result_and_words_that_are_not_units_are_left_alone():
    assert mark_units("She reads 5 * 25 = 125 pages") == "She reads 5 * 25 = 125 pages"
    assert mark_units("40% of 450 = 180") == "40% of 450 = 180"
    assert mark_units("It costs 3 each * 4 = 12") == "It costs 3 each * 4 = 12"


def test_one_name_per_unit():
    assert {unit_name(word) for word in ("Hours", "hour", "hours")} == {"unit_hour"}


@pytest.mark.parametrize(
    "step, verdict",
    [
        ("Next, the second part: 80 km/h × 1.5 h = 110 km.", "invalid"),
        ("Next, the second part: 80 km/h × 1.5 h = 120 km.", "valid"),
        ("Revenue: 48 muffins × $3 per muffin = $144.", "valid"),
        ("Average speed = 180 km ÷ 2.25 h = 80 km/h.", "valid"),
        ("Time: 2,160 L ÷ 12 L/min = 170 min.", "invalid"),
        ("Since 1 liter = 1000 cm³, we are done.", "unknown"),  # a conversion is not arithmetic
        ("47 minutes = 47/60 hours.", "unknown"),
        ("5 days × 25 pages = 125 pages.", "valid"),  # the numbers hold; the units differ
        ("5 days × 25 pages = 120 pages.", "unknown"),  # a unit left implicit: never invalid
        ("2 boys + 3 girls = 5 children.", "unknown"),  # a sum of different units
    ],
)
def test_units_are_compared_never_guessed(arith, step, verdict):
    assert arith.verify(step, PROBLEM).verdict == verdict
