"""One `prefect server` on a free loopback port for a benchmark's `prmforge` commands.

Without PREFECT_API_URL, every `prmforge` command starts Prefect's temporary API server in its own
process and stops it at the end; a nightly user runs one server (and workers) instead. A bench that
starts many commands, or measures what a run costs beside a running server, starts it here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


@contextlib.contextmanager
def prefect_server(home: Path, timeout: float = 300.0):
    """Yields the server's API URL (also set as PREFECT_API_URL in os.environ while it runs)."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}/api", time.monotonic() + timeout
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the bench's Prefect server did not start within {timeout:.0f} s")
            time.sleep(1)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
