import pytest

from tasks.splitting import split_steps


def test_default_splits_on_step_markers_and_keeps_the_answer_with_the_last_step():
    text = "Step 1: 4 + 5 = 9\nStep 2: 9 * 2 = 18\nThe answer is 18."
    assert split_steps(text) == ["Step 1: 4 + 5 = 9", "Step 2: 9 * 2 = 18\nThe answer is 18."]


def test_default_splits_on_blank_lines():
    assert split_steps("Add them.\n\n  \nThen double.\n\n") == ["Add them.", "Then double."]


def test_a_single_line_is_one_step_and_empty_text_is_none():
    assert split_steps("Step 1: 1 + 1 = 2") == ["Step 1: 1 + 1 = 2"]
    assert split_steps("   \n\n") == []


def test_boundary_is_configurable():
    assert split_steps("a; b; c", boundary=r";\s*") == ["a", "b", "c"]


@pytest.mark.parametrize("text", ["Step 10: 1 + 2 = 3\nStep 11: 3 + 1 = 4"])
def test_multi_digit_step_numbers(text):
    assert len(split_steps(text)) == 2
