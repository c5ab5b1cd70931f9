import pytest

from tasks.answers import answers_match, extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: 2 + 2 = 4\nThe answer is 4.", "4"),
        ("so \\boxed{\\frac{3}{4}} it is", "\\frac{3}{4}"),
        ("He has 72 clips.\n#### 72", "72"),
        ("The answer is 1,000.", "1,000"),
        ("The answer is 3.\nThe answer is 5.", "5"),
        ("nothing here", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        ("18", "18", True),
        ("18.0", "18", True),
        ("\\frac{1}{2}", "0.5", True),
        ("1,000", "1000", True),
        ("17", "18", False),
        ("", "18", False),
        (None, "18", False),
        ("banana", "18", False),
    ],
)
def test_answers_match_uses_mathematical_equivalence(candidate, reference, expected):
    assert answers_match(candidate, reference) is expected
