"""The `chat` prompt format on a Qwen2-shaped instruct model built by the test session
(tests/conftest.py: chat_model_dir; its tokenizer carries a ChatML chat template), through every
backend that runs it: transformers and vLLM's engine render the template locally, a real vLLM
OpenAI server renders it through its chat-completions endpoint, or takes a prompt rendered here.

One engine and one server serve the whole module (each starts in ~30-60 s on 2 CPU cores).
"""

import pytest

from schemas.config import GenerateConfig
from schemas.records import SamplingParams
from tasks.labelers.base import LabelRequest
from tasks.labelers.mc import MonteCarloLabeler
from tasks.policies.openai_policy import API_KEY_ENV, OpenAIPolicy
from tasks.policies.transformers_policy import TransformersPolicy
from tasks.prompts import ChatPrompt, format_for
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, sample_solutions

CHAT = format_for(GenerateConfig(prompt_format="chat"))
PROBLEMS = generate_problems(3, seed=4, min_steps=2, max_steps=3)
PROMPTS = [CHAT.prompt(problem) for problem in PROBLEMS] + [CHAT.prefix(PROBLEMS[0], ["Step 1: 14 + 7 = 21"])]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=48)
SERVED_NAME = "tiny-chat"
KEY = "test-key-not-secret"


@pytest.fixture(scope="module")
def transformers_policy(chat_model_dir):
    return TransformersPolicy(chat_model_dir)


@pytest.fixture(scope="module")
def engine(chat_model_dir, vllm_installed):
    from tasks.policies.vllm_policy import VLLMPolicy


    policy = VLLMPolicy(chat_model_dir, kv_cache_memory_bytes=256 * 2**20)
    policy.engine()
    yield policy
    policy.close()


@pytest.fixture(scope="module")
def server(chat_model_dir, vllm_server, tmp_path_factory):
    """A vLLM OpenAI server on 127.0.0.1 serving the chat model as 'tiny-chat'."""
    with vllm_server(chat_model_dir, SERVED_NAME, tmp_path_factory.mktemp("vllm-chat"), api_key=KEY) as base_url:
        yield base_url


@pytest.fixture()
def client(server, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    policy = OpenAIPolicy(server, SERVED_NAME)
    yield policy
    policy.close()


def texts(rows):
    return [[generation.text for generation in row] for row in rows]


# --- transformers ---------------------------------------------------------------------------------


def test_transformers_renders_the_tokenizers_chat_template(transformers_policy, chat_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    bare = PROMPTS[0]
    template_ids = tokenizer.apply_chat_template(bare.as_messages(), add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
    assert transformers_policy.count_prompt_tokens([bare]) == [len(template_ids)]
    reply_ids = tokenizer(PROMPTS[-1].reply, add_special_tokens=False)["input_ids"]
    assert transformers_policy.count_prompt_tokens([PROMPTS[-1]]) == [len(template_ids) + len(reply_ids)]
    assert transformers_policy.context_length() == 1024


def test_chat_solutions_split_at_blank_lines_with_boxed_answers(transformers_policy):
    solutions, _ = sample_solutions(transformers_policy, PROBLEMS, 4, SamplingParams(max_new_tokens=96, seed=3),
                                    prompt_format=CHAT)
    assert len(solutions) == 12
    assert all("\n\n" not in step for solution in solutions for step in solution.steps)
    answered = [solution for solution in solutions if solution.final_answer is not None]
    # The model learned the shape (steps, then a \boxed{} answer); its numbers are mostly wrong, and
    # a sample may restart its answer line (`The answer is $\boxed{9The answer is $\boxed{66}$.`,
    # seen on one machine's CPU kernels): the answer is the last step's last box.
    assert len(answered) >= 9
    for solution in answered:
        assert len(solution.steps) >= 2
        last = solution.steps[-1]
        assert last.startswith("The answer is $\\boxed{") and last.endswith(f"\\boxed{{{solution.final_answer}}}$.")


# --- vLLM's engine --------------------------------------------------------------------------------


def test_the_vllm_engine_renders_the_same_prompts_as_transformers(engine, transformers_policy):
    assert engine.context_length() == 1024
    assert engine.count_prompt_tokens(PROMPTS) == transformers_policy.count_prompt_tokens(PROMPTS)
    assert texts(engine.generate(PROMPTS, 1, GREEDY)) == texts(transformers_policy.generate(PROMPTS, 1, GREEDY))


def test_the_vllm_engine_labels_a_chat_tree(engine):
    params = SamplingParams(max_new_tokens=96, seed=5)
    solutions, _ = sample_solutions(engine, PROBLEMS[:2], 2, params, prompt_format=CHAT)
    tree = build_tree(solutions)
    request = LabelRequest({node.node_id: node for node in tree}, {p.problem_id: p for p in PROBLEMS}, tree, 2,
                           params, prompt_format=CHAT)
    result = MonteCarloLabeler().label(engine, request)
    assert {label.node_id for label in result.labels} == {node.node_id for node in tree}
    rolled = [label for label in result.labels if label.n]
    assert rolled and len(result.rollouts) == 2 * len(rolled)
    assert sum(rollout.final_answer is not None for rollout in result.rollouts) >= len(result.rollouts) // 2


# --- a vLLM OpenAI server -------------------------------------------------------------------------


def test_the_chat_endpoint_renders_on_the_server_as_the_engine_does(client, engine):
    bare = PROMPTS[:-1]
    assert texts(client.generate(bare, 1, GREEDY)) == texts(engine.generate(bare, 1, GREEDY))
    [[continued]] = client.generate([PROMPTS[-1]], 1, GREEDY)  # the reply so far, continued
    assert continued.text and not continued.text.startswith("Step 1:")
    assert client.context_length() == 1024
    assert client.count_prompt_tokens(bare) == engine.count_prompt_tokens(bare)


def test_a_prompt_rendered_here_goes_to_the_completions_endpoint(client, engine, chat_model_dir):
    local = [ChatPrompt(prompt.messages, prompt.reply, str(chat_model_dir)) for prompt in PROMPTS]
    assert texts(client.generate(local, 1, GREEDY)) == texts(engine.generate(PROMPTS, 1, GREEDY))
    assert client.count_prompt_tokens(local) == engine.count_prompt_tokens(PROMPTS)


def test_the_generate_flow_runs_chat_through_the_server(server, prefect_harness, tmp_path, monkeypatch):
    from flows.generate import generate_flow
    from schemas.config import WarehouseConfig
    from warehouse.connection import connect

    monkeypatch.setenv(API_KEY_ENV, KEY)
    config = GenerateConfig(problems=2, samples=2, rollouts=2, seed=2, max_new_tokens=96, prompt_format="chat",
                            policy=f"openai:{server}/{SERVED_NAME}")
    warehouse = WarehouseConfig(data_dir=tmp_path / "warehouse")
    summary = generate_flow(config, warehouse)
    assert summary.status == "completed" and summary.new_nodes > 0
    connection = connect(warehouse, read_only=True)
    try:
        formats = connection.execute(
            "SELECT (SELECT list(DISTINCT prompt_format) FROM nodes), (SELECT list(DISTINCT prompt_format) FROM rollouts),"
            " (SELECT prompt_format FROM runs)").fetchone()
        answers = connection.execute("SELECT count(final_answer), count(*) FROM rollouts").fetchone()
    finally:
        connection.close()
    assert formats[0] == formats[1] == [CHAT.id]
    assert '"kind": "chat"' in formats[2]
    assert answers[0] > 0  # \boxed{} answers read from what the server's chat endpoint returned
