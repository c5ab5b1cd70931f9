from tasks.ids import content_id, node_id, problem_id


def test_ids_are_stable_hex_of_fixed_length():
    assert content_id("a", 1) == content_id("a", 1)
    assert len(content_id("a")) == 32
    assert int(content_id("a"), 16) >= 0


def test_fields_never_run_together():
    assert content_id("ab", "c") != content_id("a", "bc")
    assert content_id(None) == content_id("")


def test_node_id_depends_on_parent_and_text():
    problem = problem_id("Q", "1")
    root = node_id(problem, None, "Step 1: 1 + 1 = 2")
    assert root == node_id(problem, None, "Step 1: 1 + 1 = 2")
    assert root != node_id(problem_id("Q2", "1"), None, "Step 1: 1 + 1 = 2")
    child = node_id(problem, root, "Step 2: 2 + 2 = 4")
    assert child != node_id(problem, None, "Step 2: 2 + 2 = 4")
    assert child != node_id(problem, root, "Step 2: 2 + 2 = 5")


def test_problem_id_ignores_surrounding_whitespace():
    assert problem_id(" Q ", "1\n") == problem_id("Q", "1")
