import pytest

from tasks.verifiers.roles import (
    ASSERTION,
    ASSUMPTION,
    CONDITION,
    DEFINITION,
    QUESTION,
    REJECTED,
    read_step,
)


def roles(text: str) -> list[tuple[str, str]]:
    return [(statement.claim.text, statement.role) for statement in read_step(text).statements]


def scopes(text: str) -> list[tuple[str, int]]:
    return [(statement.claim.text, statement.scope) for statement in read_step(text).statements]


def test_a_plain_computation_is_an_assertion():
    assert roles("so 12 × 4 = 48 apples") == [("12 * 4 = 48", ASSERTION)]
    assert roles("Step 2: 21 - 3 = 18") == [("21 - 3 = 18", ASSERTION)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("For $k = 3$, the sum becomes $3 + 6 = 9$.", [("k = 3", ASSUMPTION), ("3 + 6 = 9", ASSERTION)]),
        ("If $t = 2$ then $t^2 = 4$.", [("t = 2", ASSUMPTION), ("t^2 = 4", ASSERTION)]),
        ("The bound is reached when $y = 1$.", [("y = 1", ASSUMPTION)]),
        ("Case 3: $q < 0$. Then $q^2 > 0$.", [("q < 0", ASSUMPTION), ("q^2 > 0", ASSERTION)]),
        ("Substituting $m = 5$ into the formula gives $2 \\cdot 5 + 1 = 11$.", [("m = 5", ASSUMPTION), ("2 \\cdot 5 + 1 = 11", ASSERTION)]),
        ("$z = 4$: $16 - 1 = 15$.", [("z = 4", ASSUMPTION), ("16 - 1 = 15", ASSERTION)]),
        ("$b = 7$ gives $49 + 1 = 50$.", [("b = 7", ASSUMPTION), ("49 + 1 = 50", ASSERTION)]),
    ],
)
def test_cases_and_assumptions_are_not_asserted(text, expected):
    assert roles(text) == expected


def test_definitions():
    assert roles("Let $u = x^2$.") == [("u = x^2", DEFINITION)]
    assert roles("where $h = 5$ and $w = 2$") == [("h = 5", DEFINITION), ("w = 2", DEFINITION)]
    # The computation in a definition's chain is still asserted.
    assert roles("Let $s = 3 + 4 = 7$.") == [("s = 3 + 4", DEFINITION), ("3 + 4 = 7", ASSERTION)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("We need $r < 12$.", [("r < 12", CONDITION)]),
        ("This holds for $j \\ge 3$.", [("j >= 3", CONDITION)]),
        ("Pick the largest $a$ such that $2a < 9$.", [("2a < 9", CONDITION)]),
        ("That would mean $5 \\cdot 3 > 16$.", [("5 \\cdot 3 > 16", CONDITION)]),
        ("So $\\frac{2}{3} > \\frac{3}{4}$ would mean $8 > 9$.", [("\\frac{2}{3} > \\frac{3}{4}", CONDITION), ("8 > 9", CONDITION)]),
    ],
)
def test_conditions_and_hypotheticals(text, expected):
    assert roles(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Then $9 < 4$, which is false.",
        "This gives $2 + 2 = 5$, a contradiction.",
        "So $10 > 12$ is impossible.",
        "We would get $3 = 4$, which is not true.",
    ],
)
def test_rejected_claims(text):
    assert [role for _, role in roles(text)] == [REJECTED]


def test_a_rejected_chain_asserts_its_computations():
    assert roles("$40 > 6.5^2 = 42.25$, which is false.") == [("40 > 6.5^2", REJECTED), ("6.5^2 = 42.25", ASSERTION)]


def test_a_sentence_taken_back_is_rejected():
    assert roles("So 7 × 6 = 43. Wait, that is wrong: 7 × 6 = 42.") == [("7 * 6 = 43", REJECTED), ("7 * 6 = 42", ASSERTION)]


def test_not_prime_or_not_an_integer_is_no_rejection():
    assert roles("so $n^2 + 1 = 10$, which is not prime") == [("n^2 + 1 = 10", ASSERTION)]
    assert roles("so $c = 2.5$, which is not an integer") == [("c = 2.5", ASSERTION)]


def test_questions():
    assert roles("Is $17 \\cdot 3 = 51$? Yes.") == [("17 \\cdot 3 = 51", QUESTION)]
    assert roles("Does $v = 2$ work? $4 - 4 = 0$.") == [("v = 2", QUESTION), ("4 - 4 = 0", ASSERTION)]


def test_values_offered_for_one_name_are_alternatives():
    reading = read_step("so $w = 3$ or $w = -3$.")
    assert [(s.claim.text, s.alternative) for s in reading.statements] == [("w = 3", True), ("w = -3", True)]
    assert read_step("The roots are $x = 1$ and $x = 6$.").statements[1].alternative
    assert read_step("Hence $k = 2, 5, 8$.").statements[0].alternative
    assert not read_step("so $a = 1$ and $b = 2$.").statements[0].alternative


def test_list_markers_are_not_numbers_and_open_cases():
    assert scopes("The options:\n1. $p = 2$: then $p + 1 = 3$.\n2. $p = 5$: then $p + 1 = 6$.") == [
        ("p = 2", 1), ("p + 1 = 3", 1), ("p = 5", 2), ("p + 1 = 6", 2)
    ]
    assert roles("## Step 4: Add them\n5 + 6 = 11") == [("5 + 6 = 11", ASSERTION)]


def test_each_case_is_its_own_scope_and_what_comes_before_is_scope_zero():
    assert scopes("We have $c = 3$. If $d = 1$, $c + d = 4$. If $d = 2$, $c + d = 5$.") == [
        ("c = 3", 0), ("d = 1", 1), ("c + d = 4", 1), ("d = 2", 2), ("c + d = 5", 2)
    ]


def test_congruences_take_the_modulus_of_their_sentence():
    statements = read_step("We have $5^2 \\equiv 4$, $5^3 \\equiv 6 \\pmod 7$.").statements
    assert [(s.claim.text, str(s.claim.modulus)) for s in statements] == [("5^2 ≡ 4", "7"), ("5^3 ≡ 6", "7")]


def test_a_negated_relation_is_unread_with_the_reason():
    reading = read_step("It is not true that $3 + 3 = 7$.")
    assert reading.statements == ()
    assert [(u.text, u.reason) for u in reading.unread] == [("3 + 3 = 7", "negated relation ('not') is not read")]


def test_an_unreadable_assertion_keeps_its_role():
    (unread,) = read_step("Then half of 50 = 25.").unread
    assert (unread.text, unread.role) == ("50 = 25", ASSERTION)


def test_whole_group_words_are_noted():
    assert read_step("She fills 7 / 2 = 3 full boxes.").statements[0].whole_hint
    assert not read_step("Step 2: 13 / 2 = 7").statements[0].whole_hint


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so $x = -8$ is extraneous.", [("x = -8", REJECTED)]),
        ("$n = 3$ gives $17 < 12$, which fails.", [("n = 3", ASSUMPTION), ("17 < 12", REJECTED)]),
        ("$25 \\le 17$ fails, so no.", [("25 <= 17", REJECTED)]),
        ("We reject $x = -8$.", [("x = -8", REJECTED)]),
    ],
)
def test_words_that_reject_a_relation(text, expected):
    assert roles(text) == expected


def test_a_name_introduced_in_words():
    assert read_step("Now let $S$ denote the sum $1 + 3 = 4$.").introduced == ((0, 0, "S"),)
    assert read_step("Let the number of boys be $b$.").introduced == ((0, 0, "b"),)
    assert read_step("Let's compute $x$ now.").introduced == ()
    assert read_step("Let $S$ be the sum: $S = 8 \\cdot 12 = 96$.").introduced == ()  # a definition
