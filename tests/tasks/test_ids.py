import hashlib

from tasks.ids import content_id, node_id, problem_id


def test_ids_are_stable_hex_of_fixed_length():
    assert content_id("a", 1) == content_id("a", 1)
    assert len(content_id("a")) == 32
    # Stable across processes and machines: the first 32 hex digits of SHA-256 of the fields
    # joined by the unit separator, pinned so that a change of hash, joiner or length shows.
    assert content_id("a") == "ca978112ca1bbdcafac231b39a23dc4d" == hashlib.sha256(b"a").hexdigest()[:32]
    assert content_id("a", 1) == "839e11a421d370be28db56fde67e9aad" == hashlib.sha256(b"a\x1f1").hexdigest()[:32]
    assert problem_id("Q", "1") == "a131362738fb15bfaad8f169f0ae0078"


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
