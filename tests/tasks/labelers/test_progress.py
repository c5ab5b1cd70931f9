import dataclasses

import pytest

from schemas.records import Generation, Problem, SamplingParams, Solution
from schemas.tables import STEP_LABELS
from tasks import frames
from tasks.labelers.base import LabelRequest
from tasks.labelers.progress import ProgressLabeler, label_progress, progress_of
from tasks.labelers.registry import get_labeler
from tasks.text_format import prefix_for, prompt_for
from tasks.tree import build_tree, solution_nodes

QUESTION = "Q?"
PROBLEM = Problem("p1", QUESTION, "10", "synthetic")
RIGHT, WRONG = "The answer is 10.", "The answer is 7."


class ScriptedPolicy:
    name = "scripted"

    def __init__(self, correct: dict[str, int]):
        self.correct = correct
        self.prompts_seen: list[str] = []

    def generate(self, prompts, n, params):
        self.prompts_seen.extend(prompts)
        return [[Generation(RIGHT if i < self.correct[p] else WRONG, 2, "stop") for i in range(n)] for p in prompts]


SOLUTION = Solution("p1", ["Step 1: a", "Step 2: b", "Step 3: c\nThe answer is 7."], "7", False)
NODES = solution_nodes(SOLUTION)
SCRIPT = {
    prompt_for(QUESTION): 2,  # q_0 = 0.5
    prefix_for(QUESTION, SOLUTION.steps[:1]): 3,  # q_1 = 0.75
    prefix_for(QUESTION, SOLUTION.steps[:2]): 1,  # q_2 = 0.25; q_3 = 0 from the wrong answer
}


def request(to_label) -> LabelRequest:
    tree = build_tree([SOLUTION])
    return LabelRequest({n.node_id: n for n in tree}, {"p1": PROBLEM}, to_label, 4, SamplingParams())


def test_progress_of():
    assert progress_of(0.75, 0.5) == 0.25
    assert progress_of(0.0, 0.25) == -0.25


def test_progress_is_the_change_in_q_from_the_prompt_on():
    policy = ScriptedPolicy(SCRIPT)
    outcome = label_progress(policy, request(NODES))
    labels = {label.node_id: label for label in outcome.result.labels}
    got = [(labels[n.node_id].q, labels[n.node_id].progress, labels[n.node_id].hard) for n in NODES]
    assert got == [(0.75, 0.25, True), (0.25, -0.5, True), (0.0, -0.25, False)]
    assert [labels[n.node_id].n for n in NODES] == [4, 4, 0]
    assert {label.labeler for label in outcome.result.labels} == {"progress"}
    assert labels[NODES[0].node_id].reason == "progress: q_t 0.750 (3 of 4) - q_t-1 0.500 (prompt, 2 of 4)"
    assert labels[NODES[2].node_id].reason == (
        "progress: q_t 0.000 (the stated answer) - q_t-1 0.250 (previous step, 1 of 4)"
    )
    assert policy.prompts_seen.count(prompt_for(QUESTION)) == 1
    assert outcome.prompts["p1"].q == 0.5
    # two steps' rollouts are rows; the prompt's 4 are not (no node), but their tokens count
    assert len(outcome.result.rollouts) == 8
    assert outcome.result.usage.generated_tokens == 12 * 2


def test_a_parent_already_labelled_is_estimated_again_but_not_relabelled():
    policy = ScriptedPolicy(SCRIPT)
    outcome = label_progress(policy, request([NODES[2]]))
    assert [label.node_id for label in outcome.result.labels] == [NODES[2].node_id]
    assert outcome.result.labels[0].progress == -0.25
    assert prompt_for(QUESTION) not in policy.prompts_seen  # no first step to label: no q_0


def test_progress_goes_into_the_step_labels_column():
    result = get_labeler("progress").label(ScriptedPolicy(SCRIPT), request(NODES))
    frame = frames.labels_frame(result.labels, "run")
    assert frame.columns == STEP_LABELS.column_names
    assert sorted(frame["progress"].to_list()) == [-0.5, -0.25, 0.25]
    assert isinstance(get_labeler("progress"), ProgressLabeler)
    assert dataclasses.asdict(result.labels[0])["progress"] is not None


def test_missing_parent_fails_with_advice():
    partial = LabelRequest({NODES[2].node_id: NODES[2]}, {"p1": PROBLEM}, [NODES[2]], 4, SamplingParams())
    with pytest.raises(ValueError, match="pass the whole tree"):
        label_progress(ScriptedPolicy(SCRIPT), partial)


def test_docstring_examples():
    import doctest

    import tasks.labelers.progress

    assert doctest.testmod(tasks.labelers.progress) == doctest.TestResults(failed=0, attempted=1)  # every example ran
