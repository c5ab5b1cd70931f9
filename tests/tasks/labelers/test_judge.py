import json

import pytest

from schemas.records import Generation, Node, Problem, SamplingParams
from tasks.ids import content_id
from tasks.labelers.base import LabelRequest
from tasks.labelers.judge import INSTEAD, JudgeLabeler, JudgeUnavailable, judge_prompt, parse_first_error
from tasks.policies.base import PolicyUnavailable
from tasks.policies.timeout import PolicyTimeout
from tasks.labelers.registry import get_labeler


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 3", 2),
        ("3", 2),
        ("3.", 2),
        ("(2)", 1),
        ("The first error is in step 2.", 1),
        ("  step #4\n", 3),
        ("paragraph_1", 0),
        ("The error is in Step 2: 21 * 3 is 63, not 62.", 1),
        ("Let me check.\nStep 1 is fine.\nAnswer: Step 3", 2),
        ("Final answer: \\boxed{1}", 0),
        ("-1", -1),
        ("none", -1),
        ("None.", -1),
        ("No mistakes", -1),
        ("There are no errors in this solution.", -1),
        ("all steps are correct", -1),
        ("All the steps are correct.", -1),
        ("Everything is correct.", -1),
        ("Step 5", None),  # out of range for 4 steps
        ("0", None),  # steps are numbered from 1
        ("Step 2 or step 3", None),
        ("Step 2 has no errors.", None),
        ("I am not sure.", None),
        ("", None),
        ("42 apples", None),
    ],
)
def test_parse_first_error(text, expected):
    assert parse_first_error(text, 4) == expected


def test_the_prompt_numbers_the_steps_on_one_line_each():
    prompt = judge_prompt(" Q? ", ["Step 1: 1 + 1 = 2", "Step 2: 2 * 3 = 6\nThe answer is 6."])
    assert "Problem:\nQ?\n\nSolution, one numbered step per line:\n(1) Step 1: 1 + 1 = 2\n" in prompt
    assert "(2) Step 2: 2 * 3 = 6 The answer is 6.\n\n" in prompt
    assert prompt.endswith('If every step is correct, reply "none".\nFirst wrong step:')


class ScriptedJudge:
    """Answers each prompt with the text scripted for the solution's last step."""

    name = "scripted-judge"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers
        self.calls: list[tuple[list[str], int, SamplingParams]] = []

    def generate(self, prompts, n, params):
        self.calls.append((list(prompts), n, params))
        out = []
        for prompt in prompts:
            last = next(step for step, answer in self.answers.items() if f") {step}\n" in prompt)
            out.append([Generation(self.answers[last], 2, "stop")])
        return out


def _request(to_label=None) -> LabelRequest:
    nodes = [
        Node("a", "p", None, 1, "A", False),
        Node("b", "p", "a", 2, "B", False),
        Node("c", "p", "b", 3, "C", True, "5", False),
        Node("d", "p", "a", 2, "D", True, "6", True),
        Node("e", "p", None, 1, "E", True, "7", False),
    ]
    by_id = {node.node_id: node for node in nodes}
    return LabelRequest(by_id, {"p": Problem("p", "Q?", "6", "synthetic")}, to_label or nodes, 4, SamplingParams(seed=3))


def test_labels_follow_the_named_first_error_and_unreadable_answers_are_recorded():
    policy = ScriptedJudge({"C": "The first error is in step 2.", "D": "none", "E": "hmm, hard to say"})
    result = JudgeLabeler().label(policy, _request())
    labels = {label.node_id: (label.hard, label.q) for label in result.labels}
    assert labels == {"a": (True, 1.0), "b": (False, 0.0), "c": (False, 0.0), "d": (True, 1.0)}
    by_node = {label.node_id: label for label in result.labels}
    assert by_node["b"].label_id == content_id("label", "b", "judge")
    assert by_node["b"].reason == "judge: first wrong step 2 (answer 'The first error is in step 2.')"
    assert by_node["d"].reason == "judge: no wrong step (answer 'none')"
    assert [(j.terminal_node_id, j.first_error) for j in result.judgements] == [("c", 1), ("d", -1), ("e", None)]
    assert [j.terminal_node_id for j in result.unknown] == ["e"]
    assert result.unknown[0].reason == "unreadable answer: no single step number or 'none'"
    assert result.unknown[0].output == "hmm, hard to say"
    assert result.unknown[0].prompt == judge_prompt("Q?", ["E"])
    assert result.disagreements == 0
    assert (result.usage.prompts, result.usage.generated_tokens, result.usage.calls) == (3, 6, 1)
    (_, n, params), = policy.calls
    assert (n, params.temperature, params.max_new_tokens, params.seed) == (1, 0.0, 256, 3)


def test_only_requested_nodes_get_labels_and_a_shared_node_keeps_its_first_label():
    policy = ScriptedJudge({"C": "Step 1", "D": "none", "E": "none"})
    request = _request()
    result = JudgeLabeler().label(policy, LabelRequest(request.nodes, request.problems, [request.nodes["a"]], 4, request.params))
    # Paths in terminal-id order: c says step 1 (a is bad), d says none (a is good): c decides.
    assert [(label.node_id, label.hard) for label in result.labels] == [("a", False)]
    assert result.disagreements == 1
    assert [j.terminal_node_id for j in result.judgements] == ["c", "d"]  # e does not pass through a


def test_the_simulated_policy_cannot_judge_and_says_what_to_use_instead():
    from schemas.errors import UserError
    from tasks.policies.registry import load_policy

    with pytest.raises(JudgeUnavailable) as raised:
        JudgeLabeler().label(load_policy("simulated"), _request())
    assert isinstance(raised.value, UserError)  # the command line prints it as one line
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("policy 'simulated:error_rate=0.15,")
    assert "' cannot act as the judge (the simulated policy reads prompts of the form 'Question: ..." in message
    assert message.endswith(f"; {INSTEAD}")


def test_a_prompt_longer_than_the_models_context_is_judge_unavailable():
    from tasks.policies.registry import load_policy

    request = _request()
    long_question = "Mia has 21 apples and counts them again. " * 800  # thousands of tokens in any tokenizer
    problems = {"p": Problem("p", long_question, "6", "synthetic")}
    with pytest.raises(JudgeUnavailable, match=r"cannot act as the judge \(a prompt has \d+ tokens; the model's context is \d+\)"):
        JudgeLabeler().label(load_policy("embedded"), LabelRequest(request.nodes, problems, request.to_label, 4, request.params))


@pytest.mark.parametrize("error", [PolicyUnavailable("server at http://x is down"), PolicyTimeout("no answer in 5 s")])
def test_policy_errors_pass_through_unchanged(error):
    class Failing:
        name = "openai:http://x/m"

        def generate(self, prompts, n, params):
            raise error

    with pytest.raises(type(error)) as raised:
        JudgeLabeler().label(Failing(), _request())
    assert raised.value is error


def test_a_bug_in_the_backend_is_not_turned_into_a_user_error():
    class Buggy:
        name = "buggy"

        def generate(self, prompts, n, params):
            raise KeyError("oops")

    with pytest.raises(KeyError):
        JudgeLabeler().label(Buggy(), _request())


def test_judgements_keep_the_raw_prompt_answer_and_finish_reason():
    policy = ScriptedJudge({"C": "Step 2", "D": "none", "E": "?"})
    result = JudgeLabeler().label(policy, _request())
    assert [(j.answer, j.finish_reason, j.generated_tokens) for j in result.judgements] == [
        ("2", "stop", 2), ("none", "stop", 2), (None, "stop", 2),
    ]
    assert (result.params.temperature, result.params.max_new_tokens, result.params.seed) == (0.0, 256, 3)


def test_the_registry_selects_the_judge():
    assert get_labeler("judge").name == "judge"


def test_docstring_examples():
    import doctest

    import tasks.labelers.judge as module

    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_judgements_become_rollouts_rows_in_the_warehouse(tmp_path):
    """The raw judge prompt and answer sit beside the labels: rows of `rollouts`, labeler 'judge'."""
    from schemas.config import WarehouseConfig
    from schemas.tables import ROLLOUTS
    from tasks import frames
    from tasks.labelers.base import LabelResult
    from warehouse.connection import connect
    from warehouse.writes import insert_new

    result = JudgeLabeler().label(ScriptedJudge({"C": "Step 2", "D": "none", "E": "?"}), _request())
    frame = frames.judgements_frame(result, "scripted-judge", "run-1")
    assert frame.schema == ROLLOUTS.polars_schema()
    assert frame.select("node_id", "labeler", "completion", "final_answer", "is_correct", "temperature", "seed").rows() == [
        ("c", "judge", "Step 2", "2", None, 0.0, 3),
        ("d", "judge", "none", "none", None, 0.0, 3),
        ("e", "judge", "?", None, None, 0.0, 3),
    ]
    assert frame["prompt"].to_list() == [judgement.prompt for judgement in result.judgements]
    assert frames.judgements_frame(LabelResult(), "p", "run-1").is_empty()  # other labellers: none

    connection = connect(WarehouseConfig(data_dir=tmp_path / "warehouse"))
    try:
        assert insert_new(connection, ROLLOUTS, frame) == 3
        assert insert_new(connection, ROLLOUTS, frame) == 0  # content-hash ids: never twice
        stored = connection.execute(
            "SELECT node_id, prompt FROM rollouts WHERE labeler = 'judge' AND final_answer IS NULL"
        ).fetchall()
    finally:
        connection.close()
    assert stored == [("e", judge_prompt("Q?", ["E"]))]  # an unreadable answer is kept with its prompt


class ScriptedMarks:
    """A stepwise judge: marks the last step of each prompt as scripted for that step's text."""

    def __init__(self, marks: dict[str, str], name: str = "scripted-marks"):
        self.marks, self.name = marks, name
        self.calls: list[list[str]] = []

    def generate(self, prompts, n, params):
        assert params.max_new_tokens == 32
        self.calls.append(list(prompts))
        return [[Generation(self.marks[prompt.splitlines()[-1]], 1, "stop")] for prompt in prompts]


def test_the_stepwise_protocol_marks_steps_in_turn_and_stops_at_the_first_wrong_one():
    from tasks.labelers.judge import JudgeConfig, stepwise_prompt

    policy = ScriptedMarks({"A": " | 1 + 1 = 2 ok", "B": " | 2 * 3 = 6 wrong", "D": " | ok", "E": " | 2 + 2 = 4"})
    result = JudgeLabeler(JudgeConfig(protocol="stepwise")).label(policy, _request())
    labels = {label.node_id: (label.hard, label.q) for label in result.labels}
    assert labels == {"a": (True, 1.0), "b": (False, 0.0), "c": (False, 0.0), "d": (True, 1.0)}
    judged = {j.terminal_node_id: (j.first_error, j.output, j.prompt, j.reason) for j in result.judgements}
    assert judged["c"] == (1, " | 1 + 1 = 2 ok\n | 2 * 3 = 6 wrong", stepwise_prompt("Q?", ["A", "B"]), "read")
    assert judged["d"] == (-1, " | 1 + 1 = 2 ok\n | ok", "Q?\nA\nD", "read")
    assert judged["e"] == (None, " | 2 + 2 = 4", "Q?\nE", "unreadable answer: a step check that ends in neither ok nor wrong")
    # Round one asks about every path's first step, round two about the second of those still
    # going; C, after the wrong B, is never asked about.
    assert policy.calls == [["Q?\nA", "Q?\nA", "Q?\nE"], ["Q?\nA\nB", "Q?\nA\nD"]]
    assert (result.usage.prompts, result.usage.calls, result.usage.generated_tokens) == (5, 2, 5)


def test_auto_reads_the_protocol_from_a_critics_directory(tmp_path):
    from tasks.labelers.judge import backend_protocol

    (tmp_path / "critic.json").write_text(json.dumps({"config": {"protocol": "stepwise"}}))
    assert backend_protocol(ScriptedMarks({}, name=f"transformers:{tmp_path}")) == "stepwise"
    assert backend_protocol(ScriptedMarks({}, name=f"vllm:{tmp_path / 'elsewhere'}")) == "whole"
    assert backend_protocol(ScriptedJudge({})) == "whole"
    policy = ScriptedMarks({"A": " wrong", "E": " ok"}, name=f"transformers:{tmp_path}")
    result = JudgeLabeler().label(policy, _request())
    assert {j.terminal_node_id: j.first_error for j in result.judgements} == {"c": 0, "d": 0, "e": -1}


def test_the_protocol_is_checked():
    from tasks.labelers.judge import JudgeConfig

    with pytest.raises(ValueError, match="protocol must be auto, whole or stepwise, got 'both'"):
        JudgeConfig(protocol="both")
