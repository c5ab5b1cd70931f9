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
