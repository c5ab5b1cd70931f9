"""The adaptive labeller's decisions, with exact values on tiny trees and hand-written verdicts."""

import pytest

from schemas.records import Generation, Problem, SamplingParams, Solution, Verdict
from tasks.labelers.adaptive import AdaptiveLabeler, deciding_verdict, label_adaptive
from tasks.labelers.base import LabelRequest
from tasks.labelers.registry import get_labeler, labeler_names
from tasks.policies.simulated import SimulatedConfig, SimulatedPolicy, first_error_index
from tasks.text_format import prefix_for
from tasks.tree import build_tree, solution_nodes

QUESTION = "Q?"
PROBLEM = Problem("p1", QUESTION, "10", "synthetic")
RIGHT, WRONG = "The answer is 10.", "The answer is 7."
K = 4
VALID, UNKNOWN = Verdict("arith", "valid", evidence="ok"), Verdict("arith", "unknown", reason="no claim")


def invalid(evidence: str = "2 + 2 != 5") -> Verdict:
    return Verdict("arith", "invalid", evidence=evidence)


class ScriptedPolicy:
    """Answers each prefix with `correct[prefix]` right completions out of n; an unscripted prefix fails."""

    name = "scripted"

    def __init__(self, correct: dict[str, int]):
        self.correct = correct
        self.prompts_seen: list[str] = []

    def generate(self, prompts, n, params):
        self.prompts_seen.extend(prompts)
        return [[Generation(RIGHT if i < self.correct.get(p, 0) else WRONG, 5, "stop") for i in range(n)]
                for p in prompts]


def solution(steps: int, answer: str | None, tag: str = "") -> Solution:
    texts = [f"Step {i}: {tag}{i}" for i in range(1, steps + 1)]
    if answer is not None:
        texts[-1] += f"\nThe answer is {answer}."
    return Solution("p1", texts, answer, answer == "10")


def request(*solutions: Solution, k: int = K) -> LabelRequest:
    tree = build_tree(list(solutions))
    return LabelRequest({n.node_id: n for n in tree}, {"p1": PROBLEM}, tree, k, SamplingParams())


def verdicts_for(sol: Solution, rows: list[Verdict]) -> dict[str, list[Verdict]]:
    return {node.node_id: [verdict] for node, verdict in zip(solution_nodes(sol), rows, strict=True)}


def prefix(sol: Solution, steps: int) -> str:
    return prefix_for(QUESTION, sol.steps[:steps])


def labels_of(outcome, sol: Solution):
    by_id = {label.node_id: label for label in outcome.result.labels}
    return [by_id[node.node_id] for node in solution_nodes(sol)]


def test_deciding_verdict_is_the_first_invalid_and_valid_or_unknown_decide_nothing():
    assert deciding_verdict([VALID, invalid("a"), Verdict("z3", "invalid", evidence="b")]).evidence == "a"
    assert deciding_verdict([VALID, UNKNOWN]) is None
    assert deciding_verdict([]) is None


def test_an_invalid_first_step_is_the_first_error_at_no_cost():
    sol = solution(4, "7")
    policy = ScriptedPolicy({})
    outcome = label_adaptive(policy, request(sol), verdicts_for(sol, [invalid(), VALID, VALID, VALID]))
    assert policy.prompts_seen == []
    assert outcome.traces[0].first_error == 0 and outcome.verdicts_used == 1
    labels = labels_of(outcome, sol)
    assert [(label.hard, label.q, label.n) for label in labels] == [(False, 0.0, 0)] * 4
    assert labels[0].reason == "adaptive: verifier: arith invalid: 2 + 2 != 5"
    assert labels[1].reason == "adaptive: inferred from step 1 (arith invalid: 2 + 2 != 5)"
    assert labels[3].reason == "outcome: the step states the final answer"


def test_an_invalid_step_bounds_the_search_and_valid_steps_still_need_a_probe():
    sol = solution(6, "7")  # invalid at index 4: the search runs over [0, 4)
    policy = ScriptedPolicy({prefix(sol, 3): 2, prefix(sol, 4): 1})
    outcome = label_adaptive(policy, request(sol), verdicts_for(sol, [VALID, VALID, VALID, VALID, invalid(), VALID]))
    assert policy.prompts_seen == [prefix(sol, 3), prefix(sol, 4)]  # mids 2 then 3; nothing after the bound
    assert outcome.traces[0].first_error == 4
    assert outcome.traces[0].spent == 2 * K
    labels = labels_of(outcome, sol)
    assert [label.hard for label in labels] == [True, True, True, True, False, False]
    assert [label.q for label in labels] == [0.5, 0.5, 0.5, 0.25, 0.0, 0.0]
    assert [label.n for label in labels] == [0, 0, 4, 4, 0, 0]
    assert len(outcome.result.rollouts) == 2 * K
    assert {rollout.labeler for rollout in outcome.result.rollouts} == {"adaptive"}


def test_a_zero_probe_moves_the_first_error_before_the_verifiers_bound():
    sol = solution(6, "7")
    policy = ScriptedPolicy({prefix(sol, 1): 3})  # steps 2 on: no completion reaches the answer
    outcome = label_adaptive(policy, request(sol), verdicts_for(sol, [VALID, UNKNOWN, VALID, VALID, invalid(), VALID]))
    assert policy.prompts_seen == [prefix(sol, 3), prefix(sol, 2), prefix(sol, 1)]  # mids 2, 1, 0
    assert outcome.traces[0].first_error == 1
    assert [label.hard for label in labels_of(outcome, sol)] == [True, False, False, False, False, False]


def test_a_correct_answer_makes_the_steps_before_the_bound_positive_for_free():
    sol = solution(4, "10")
    policy = ScriptedPolicy({})
    outcome = label_adaptive(policy, request(sol), verdicts_for(sol, [VALID, VALID, invalid(), VALID]))
    assert policy.prompts_seen == []
    assert outcome.traces[0].first_error == 2  # a right answer through a wrong step still has its first error
    labels = labels_of(outcome, sol)
    assert [label.hard for label in labels] == [True, True, False, True]  # the last states the right answer
    assert labels[0].reason == "adaptive: no rollouts: a solution through this step reaches the answer"


def test_out_of_budget_stops_at_the_nearest_known_wrong_step():
    sol = solution(6, "7")
    policy = ScriptedPolicy({prefix(sol, 3): 1})
    outcome = label_adaptive(policy, request(sol), verdicts_for(sol, [VALID] * 6), budget=K)  # one probe
    trace = outcome.traces[0]
    assert policy.prompts_seen == [prefix(sol, 3)]  # mid of [0, 5): 2; then [3, 5) cannot be afforded
    assert (trace.lo, trace.hi, trace.out_of_budget, trace.first_error) == (3, 5, True, 5)
    assert outcome.out_of_budget == 1
    labels = labels_of(outcome, sol)
    assert [label.hard for label in labels] == [True, True, True, True, True, False]
    assert labels[3].reason == "adaptive: out of budget (4 rollouts) with steps 4-5 open: assumed positive"
    assert labels[3].q == 1.0 and labels[3].n == 0


def test_a_budget_below_k_spends_nothing_and_keeps_the_verdicts_bound():
    sol = solution(5, "7")
    policy = ScriptedPolicy({})
    outcome = label_adaptive(policy, request(sol), verdicts_for(sol, [VALID, VALID, invalid(), VALID, VALID]), budget=K - 1)
    assert policy.prompts_seen == [] and outcome.result.rollouts == []
    assert outcome.traces[0].first_error == 2
    assert [label.hard for label in labels_of(outcome, sol)] == [True, True, False, False, False]
    with pytest.raises(ValueError, match="rollouts per solution"):
        label_adaptive(policy, request(sol), {}, budget=-1)


def test_a_probe_paid_by_one_solution_is_free_for_another_that_shares_its_prefix():
    a, b = solution(4, "7"), solution(4, "8")  # they share steps 1-3
    policy = ScriptedPolicy({prefix(a, 2): 2})
    rows = [VALID, VALID, VALID, VALID]
    verdicts = {**verdicts_for(a, rows), **verdicts_for(b, rows)}
    outcome = label_adaptive(policy, request(a, b), verdicts)
    assert sorted(policy.prompts_seen) == sorted([prefix(a, 2), prefix(a, 3)])  # each prefix probed once
    assert sum(trace.spent for trace in outcome.traces) == 2 * K
    assert sum(trace.reused_probes for trace in outcome.traces) == 2
    assert [trace.first_error for trace in outcome.traces] == [2, 2]


def test_on_the_simulated_policy_the_real_verifiers_find_a_slip_with_no_rollouts():
    """A seed of the simulated policy whose first solution's first error is an arithmetic slip."""
    from tasks.synthetic import generate_problems
    from tasks.tree import sample_solutions
    from tasks.splitting import DEFAULT_BOUNDARY

    problems = generate_problems(4, 0)
    policy = SimulatedPolicy(SimulatedConfig(error_rate=0.3, recovery_rate=0.0, wrong_operand=0.0, copy_error=0.0))
    solutions, _ = sample_solutions(policy, problems, 2, SamplingParams(seed=0), DEFAULT_BOUNDARY)
    tree = build_tree(solutions)
    labeler = AdaptiveLabeler(budget=0)  # verdicts and free evidence only
    result = labeler.label(policy, LabelRequest({n.node_id: n for n in tree}, {p.problem_id: p for p in problems},
                                                tree, K, SamplingParams(seed=1)))
    hard = {label.node_id: label.hard for label in result.labels}
    questions = {p.problem_id: p.question for p in problems}
    predicted, actual = [], []
    for sol in solutions:
        nodes = solution_nodes(sol)
        flags = [hard[node.node_id] for node in nodes]
        predicted.append(flags.index(False) if False in flags else -1)
        actual.append(first_error_index(questions[sol.problem_id], sol.steps))
    # Slips are the only mistakes, so arith sees every first error, and a right answer needs none.
    assert result.rollouts == []
    assert predicted == actual
    assert actual == [2, 3, 3, -1, 2, 2, -1, 0]  # the fixture: errors at 0, 2 and 3, and two right solutions


def test_adaptive_is_registered_with_its_budget():
    assert "adaptive" in labeler_names()
    labeler = get_labeler("adaptive", budget=8)
    assert (labeler.name, labeler.budget, labeler.verifiers) == ("adaptive", 8, ("arith", "z3"))
