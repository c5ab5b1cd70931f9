import math

import polars as pl
import pytest

from schemas.records import Generation, Problem, SamplingParams, Solution
from tasks.labelers.base import LabelRequest
from tasks.labelers.registry import get_labeler
from tasks.labelers.search import (
    FirstErrorSearchLabeler,
    balance_solutions,
    middle,
    narrow,
    search_first_errors,
)
from tasks.text_format import prefix_for
from tasks.tree import build_tree, solution_nodes

QUESTION = "Q?"
PROBLEM = Problem("p1", QUESTION, "10", "synthetic")
RIGHT, WRONG = "The answer is 10.", "The answer is 7."
K = 4


class ScriptedPolicy:
    """Answers each prefix with `correct[prefix]` right completions out of n; an unscripted prefix fails."""

    name = "scripted"

    def __init__(self, correct: dict[str, int]):
        self.correct = correct
        self.prompts_seen: list[str] = []

    def generate(self, prompts, n, params):
        self.prompts_seen.extend(prompts)
        return [[Generation(RIGHT if i < self.correct[p] else WRONG, 5, "stop") for i in range(n)] for p in prompts]


def solution(steps: int, answer: str | None, tag: str = "") -> Solution:
    """`steps` steps; the last states `answer` (None: cut off before any answer)."""
    texts = [f"Step {i}: {tag}{i}" for i in range(1, steps + 1)]
    if answer is not None:
        texts[-1] += f"\nThe answer is {answer}."
    return Solution("p1", texts, answer, answer == "10")


def script(sol: Solution, correct_counts: list[int]) -> dict[str, int]:
    """Right completions out of K from the prefix through step i, for i = 0, 1, ..."""
    return {prefix_for(QUESTION, sol.steps[: i + 1]): count for i, count in enumerate(correct_counts)}


def request(*solutions: Solution, k: int = K) -> LabelRequest:
    tree = build_tree(list(solutions))
    return LabelRequest({n.node_id: n for n in tree}, {"p1": PROBLEM}, tree, k, SamplingParams())


def run(solutions: list[Solution], correct: dict[str, int], k: int = K):
    policy = ScriptedPolicy(correct)
    outcome = search_first_errors(policy, request(*solutions, k=k))
    return outcome, policy


def test_middle_and_narrow():
    assert middle(0, 4) == 2
    assert narrow(0, 4, 2, True) == (3, 4)
    assert narrow(0, 4, 2, False) == (0, 2)
    with pytest.raises(ValueError):
        narrow(0, 4, 4, True)


def test_first_step_wrong():
    sol = solution(5, "7")  # the final step states a wrong answer: a known zero at index 4
    outcome, policy = run([sol], script(sol, [0, 0, 0, 0]))
    trace = outcome.traces[0]
    assert trace.first_error == 0
    assert policy.prompts_seen == [prefix_for(QUESTION, sol.steps[:i]) for i in (3, 2, 1)]  # mids 2, 1, 0
    labels = {label.node_id: label for label in outcome.result.labels}
    nodes = solution_nodes(sol)
    assert [labels[n.node_id].hard for n in nodes] == [False] * 5
    assert [labels[n.node_id].n for n in nodes] == [4, 4, 4, 0, 0]
    assert labels[nodes[3].node_id].reason == "search: inferred from probe at step 3 (0 of 4 completions correct)"
    assert labels[nodes[4].node_id].reason == "outcome: the step states the final answer"


def test_no_step_wrong_spends_no_rollouts():
    sol = solution(5, "10")
    outcome, policy = run([sol], {})
    assert outcome.traces[0].first_error == -1
    assert policy.prompts_seen == []
    assert outcome.result.rollouts == []
    assert {(label.hard, label.q, label.n) for label in outcome.result.labels} == {(True, 1.0, 0)}
    assert len(outcome.result.labels) == 5


def test_last_step_wrong():
    sol = solution(5, "7")
    outcome, policy = run([sol], script(sol, [4, 3, 2, 1]))
    trace = outcome.traces[0]
    assert trace.first_error == 4
    assert policy.prompts_seen == [prefix_for(QUESTION, sol.steps[:i]) for i in (3, 4)]  # mids 2, 3
    labels = {label.node_id: label for label in outcome.result.labels}
    nodes = solution_nodes(sol)
    assert [labels[n.node_id].hard for n in nodes] == [True, True, True, True, False]
    assert [labels[n.node_id].q for n in nodes] == [0.5, 0.5, 0.5, 0.25, 0.0]  # inferred: nearest probe after
    assert labels[nodes[0].node_id].reason == "search: inferred from probe at step 3 (2 of 4 completions correct)"
    assert labels[nodes[2].node_id].reason == "search: probe: 2 of 4 completions correct"
    assert (labels[nodes[2].node_id].n, labels[nodes[2].node_id].n_correct) == (4, 2)
    assert (labels[nodes[0].node_id].n, labels[nodes[0].node_id].n_correct) == (0, 0)


def test_middle_step_wrong_labels_later_steps_negative_from_the_nearest_zero():
    sol = solution(7, "7")  # true first error at index 2
    outcome, policy = run([sol], script(sol, [3, 2, 0, 0, 0, 0]))
    trace = outcome.traces[0]
    assert trace.first_error == 2
    assert sorted(trace.applied) == [1, 2, 3, 6]  # probes at 3, 1, 2 and the stated answer
    labels = {label.node_id: label for label in outcome.result.labels}
    nodes = solution_nodes(sol)
    assert [labels[n.node_id].hard for n in nodes] == [True, True, False, False, False, False, False]
    assert labels[nodes[5].node_id].reason == "search: inferred from probe at step 4 (0 of 4 completions correct)"
    assert labels[nodes[4].node_id].q == 0.0


def test_cut_off_solution_with_every_probe_positive_has_no_first_error():
    sol = solution(4, None)  # no answer stated: the last step is probed like any other
    outcome, _ = run([sol], script(sol, [4, 4, 4, 1]))
    assert outcome.traces[0].first_error == -1
    assert all(label.hard for label in outcome.result.labels)


def test_noisy_q_near_zero_moves_the_first_error_later():
    # The true first error is step index 1: its prefix and all later ones have small q. One lucky
    # rollout (1 of 4) at index 1 makes the search go past it: reported at 2, as documented.
    sol = solution(5, "7")
    outcome, _ = run([sol], script(sol, [4, 1, 0, 0]))
    assert outcome.traces[0].first_error == 2
    # A lucky rollout at the middle probe sends the search past every earlier error.
    outcome, _ = run([sol], script(sol, [0, 0, 1, 0]))
    assert outcome.traces[0].first_error == 3


@pytest.mark.parametrize("length", range(1, 10))
def test_probe_count_is_logarithmic_and_rollouts_are_probes_times_k(length):
    bound = math.ceil(math.log2(length)) + 1
    for answer, positions in (("7", range(length)), (None, range(-1, length))):
        for first in positions:
            sol = solution(length, answer)
            counts = [2 if first == -1 or i < first else 0 for i in range(length)]
            outcome, policy = run([sol], script(sol, counts), k=3)
            trace = outcome.traces[0]
            assert trace.first_error == first
            assert trace.fresh_probes <= bound
            assert len(outcome.result.rollouts) == trace.fresh_probes * 3 == len(policy.prompts_seen) * 3


def test_a_node_probed_for_one_solution_is_reused_by_another():
    first = solution(5, "7")  # searched at index 2, then 1
    second = Solution("p1", first.steps[:3] + ["Step 4: x", "Step 5: y", "Step 6: z", "Step 7: w\nThe answer is 8."], "8", False)
    correct = script(first, [4, 4, 0, 0]) | script(second, [4, 4, 0, 0, 0, 0])
    outcome, policy = run([first, second], correct)
    # second: index 3 (its own) is zero; index 2 is shared and already probed for first, so it
    # is applied for free; index 1 is shared too and probed once for both.
    assert sorted(policy.prompts_seen) == sorted(prefix_for(QUESTION, second.steps[:i]) for i in (2, 3, 4))
    assert [t.first_error for t in outcome.traces] == [2, 2]
    assert sum(t.fresh_probes for t in outcome.traces) == 3
    assert sum(t.reused_probes for t in outcome.traces) == 2
    assert len(outcome.result.rollouts) == 3 * K
    assert len({r.rollout_id for r in outcome.result.rollouts}) == 3 * K
    assert outcome.disagreements == 0


def shared_step_solutions(lucky_tag: str, unlucky_tag: str) -> tuple[Solution, Solution, Solution]:
    """Three wrong solutions from one first step. `lucky` and `unlucky` also share step 2 and then
    part; `short` ends at its own step 2, so its search probes step 1 (and finds q = 0) at once."""
    shared = ["Step 1: 1", "Step 2: 2"]
    lucky = Solution("p1", shared + [f"Step 3: {lucky_tag}3", f"Step 4: {lucky_tag}4",
                                     f"Step 5: {lucky_tag}5\nThe answer is 7."], "7", False)
    unlucky = Solution("p1", shared + [f"Step 3: {unlucky_tag}3", f"Step 4: {unlucky_tag}4",
                                       f"Step 5: {unlucky_tag}5\nThe answer is 8."], "8", False)
    short = Solution("p1", shared[:1] + ["Step 2: c\nThe answer is 9."], "9", False)
    return lucky, unlucky, short


INFERRED_BY = {
    "lucky": (True, 0.25, "search: inferred from probe at step 3 (1 of 4 completions correct)"),
    "unlucky": (False, 0.0, "search: inferred from probe at step 1 (0 of 4 completions correct)"),
}


@pytest.mark.parametrize(("lucky_tag", "unlucky_tag", "first_in_order"), [("b", "a", "lucky"), ("a", "b", "unlucky")])
def test_solutions_that_infer_a_shared_step_differently_count_one_disagreement(lucky_tag, unlucky_tag, first_in_order):
    lucky, unlucky, short = shared_step_solutions(lucky_tag, unlucky_tag)
    # Round 1 probes lucky's step 3 (1 of 4: a lucky rollout), unlucky's step 3 (0) and step 1 for
    # short (0). Round 2: lucky applies its step 3 first (nearest its middle) and moves past steps 1
    # and 2; unlucky applies its step 3, then step 1 from the cache: first error 0. Step 2 is never
    # probed (unscripted: a probe would fail), so each of the two infers it, differently.
    correct = script(short, [0]) | script(lucky, [0, 0, 1, 0]) | script(unlucky, [0, 0, 0])
    outcome, policy = run([lucky, unlucky, short], correct)
    terminal = {solution_nodes(sol)[-1].node_id: name for sol, name in
                ((lucky, "lucky"), (unlucky, "unlucky"), (short, "short"))}
    order = [terminal[trace.solution_id] for trace in outcome.traces]
    assert [name for name in order if name != "short"][0] == first_in_order  # terminal-id order, by the tags
    assert dict(zip(order, (trace.first_error for trace in outcome.traces))) == {"lucky": 3, "unlucky": 0, "short": 0}
    assert sorted(policy.prompts_seen) == sorted(
        [prefix_for(QUESTION, lucky.steps[:1])] + [prefix_for(QUESTION, lucky.steps[:i]) for i in (3, 4)]
        + [prefix_for(QUESTION, unlucky.steps[:3])]
    )
    assert outcome.disagreements == 1
    labels = {label.node_id: label for label in outcome.result.labels}
    step_one, step_two = solution_nodes(lucky)[:2]
    assert (labels[step_one.node_id].hard, labels[step_one.node_id].reason) == (
        False, "search: probe: 0 of 4 completions correct")
    # One label per node: the first solution in terminal-id order that inferred it decides.
    chosen = labels[step_two.node_id]
    assert (chosen.hard, chosen.q, chosen.reason) == INFERRED_BY[first_in_order]
    assert (chosen.n, chosen.n_correct) == (0, 0)
    # A step only one solution infers is no disagreement: unlucky's step 4, from its zero at step 3.
    assert labels[solution_nodes(unlucky)[3].node_id].reason == (
        "search: inferred from probe at step 3 (0 of 4 completions correct)")
    assert len(outcome.result.labels) == len({node.node_id for sol in (lucky, unlucky, short) for node in solution_nodes(sol)})


def test_steps_on_a_correct_solution_are_known_positive_without_rollouts():
    good = solution(4, "10")
    bad = Solution("p1", good.steps[:2] + ["Step 3: z", "Step 4: w\nThe answer is 8."], "8", False)
    outcome, policy = run([good, bad], script(bad, [9, 9, 4, 0]))  # 9: must never be asked
    assert policy.prompts_seen == [prefix_for(QUESTION, bad.steps[:3])]
    trace = next(t for t in outcome.traces if t.solution_id == solution_nodes(bad)[-1].node_id)
    assert trace.first_error == 3
    labels = {label.node_id: label for label in outcome.result.labels}
    shared = solution_nodes(good)[0]
    assert (labels[shared.node_id].hard, labels[shared.node_id].n) == (True, 0)


def test_labeler_is_registered_and_returns_one_label_per_node():
    sol = solution(3, "7")
    policy = ScriptedPolicy(script(sol, [2, 0]))
    labeler = get_labeler("search")
    assert isinstance(labeler, FirstErrorSearchLabeler) and labeler.name == "search"
    seen = []
    result = labeler.label(policy, request(sol), progress=seen.append)
    assert len(result.labels) == 3 and sum(seen) == 3
    assert {r.labeler for r in result.rollouts} == {"search"}
    assert result.usage.generated_tokens == 2 * K * 5


def frame(labels_by_solution: dict[str, list[bool]]) -> pl.DataFrame:
    return pl.DataFrame({"solution_id": list(labels_by_solution), "labels": list(labels_by_solution.values())})


def test_balance_solutions_keeps_the_minority_and_samples_the_majority():
    data = frame({"a": [True, False], "b": [False], "c": [True, True, False], "d": [True], "e": [True, True]})
    selection = balance_solutions(data, seed=0)
    kept = selection.kept["solution_id"].to_list()
    assert len(kept) == 4 and {"d", "e"} <= set(kept)
    assert selection.rejected.height == 1
    assert selection.rejected["reason"].to_list() == ["balance: negative solutions sampled down to 2 (seed 0)"]
    assert balance_solutions(data.reverse(), seed=0).kept["solution_id"].to_list() == kept
    seeds = {tuple(balance_solutions(data, seed=s).rejected["solution_id"]) for s in range(10)}
    assert len(seeds) > 1  # the seed decides which majority rows go


def test_docstring_examples():
    import doctest

    import tasks.labelers.search

    assert doctest.testmod(tasks.labelers.search) == doctest.TestResults(failed=0, attempted=2)  # every example ran
