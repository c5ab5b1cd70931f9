import pytest

from schemas.records import Generation, Node, Problem, SamplingParams
from tasks.labelers.mc import label_mc, label_targets, mc_estimate, outcome_label
from tasks.text_format import prefix_for


@pytest.mark.parametrize(
    ("n_correct", "n", "q", "hard"),
    [(0, 4, 0.0, False), (1, 4, 0.25, True), (4, 4, 1.0, True), (3, 8, 0.375, True)],
)
def test_mc_estimate(n_correct, n, q, hard):
    assert mc_estimate(n_correct, n) == (q, hard)


@pytest.mark.parametrize(("n_correct", "n"), [(5, 4), (-1, 4), (0, 0)])
def test_mc_estimate_rejects_impossible_counts(n_correct, n):
    with pytest.raises(ValueError):
        mc_estimate(n_correct, n)


class ScriptedPolicy:
    """Answers each prefix with a fixed list of completions: exact counts, no randomness."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.prompts_seen: list[str] = []

    def generate(self, prompts, n, params):
        self.prompts_seen.extend(prompts)
        return [[Generation(text, 3, "stop") for text in self.script[p][:n]] for p in prompts]


def test_label_mc_counts_correct_completions_and_keeps_rollouts():
    problem = Problem("p1", "Q?", "6", "synthetic")
    first = Node("n1", "p1", None, 1, "Step 1: 1 + 2 = 3", False)
    last = Node("n2", "p1", "n1", 2, "Step 2: 3 * 2 = 6\nThe answer is 6.", True, "6", True)
    nodes = {node.node_id: node for node in (first, last)}
    prefix = prefix_for("Q?", [first.step_text])
    policy = ScriptedPolicy(
        {prefix: ["Step 2: 3 * 2 = 6\nThe answer is 6.", "Step 2: 3 * 2 = 7\nThe answer is 7.",
                  "The answer is 6.0", "no answer"]}
    )
    result = label_mc(policy, label_targets([first, last], nodes, {"p1": problem}), 4, SamplingParams())
    assert policy.prompts_seen == [prefix]  # the terminal step is labelled by its own answer
    by_node = {label.node_id: label for label in result.labels}
    assert (by_node["n1"].q, by_node["n1"].hard, by_node["n1"].n, by_node["n1"].n_correct) == (0.5, True, 4, 2)
    assert by_node["n1"].generated_tokens == 12
    assert (by_node["n2"].q, by_node["n2"].n) == (1.0, 0)
    assert [r.is_correct for r in result.rollouts] == [True, False, True, False]
    assert len({r.rollout_id for r in result.rollouts}) == 4
    assert result.usage.generated_tokens == 12


def test_outcome_label_of_a_wrong_final_step_is_zero():
    node = Node("n", "p", None, 1, "The answer is 5.", True, "5", False)
    label = outcome_label(node)
    assert (label.q, label.hard, label.n, label.n_correct) == (0.0, False, 0, 0)


class EngineLikePolicy(ScriptedPolicy):
    """Asks for three prompts per call, as an engine that batches by itself would ask for more."""

    prompts_per_call = 3

    def __init__(self, script):
        super().__init__(script)
        self.calls: list[int] = []

    def generate(self, prompts, n, params):
        self.calls.append(len(prompts))
        return super().generate(prompts, n, params)


def test_label_mc_sends_as_many_prefixes_per_call_as_the_policy_asks_for(tmp_path):
    from tasks.policies.cache import CachedPolicy
    from tasks.policies.timeout import TimeoutPolicy

    problem = Problem("p1", "Q?", "6", "synthetic")
    chain = [Node(f"n{i}", "p1", f"n{i - 1}" if i else None, i + 1, f"Step {i + 1}: {i} + 0 = {i}", False)
             for i in range(7)]
    nodes = {node.node_id: node for node in chain}
    targets = label_targets(chain, nodes, {"p1": problem})
    policy = EngineLikePolicy({target.prefix: ["The answer is 6."] * 2 for target in targets})
    wrapped = CachedPolicy(TimeoutPolicy(policy, 60), tmp_path / "cache.sqlite")
    assert wrapped.prompts_per_call == 3

    result = label_mc(wrapped, targets, 2, SamplingParams())
    assert policy.calls == [3, 3, 1]
    assert policy.prompts_seen == [target.prefix for target in targets]  # tree order kept
    assert len(result.labels) == 7
    explicit = EngineLikePolicy(policy.script)
    label_mc(explicit, targets, 2, SamplingParams(), batch_size=5)
    assert explicit.calls == [5, 2]  # an explicit batch size wins over the policy's wish
