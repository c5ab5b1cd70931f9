"""The scale-out recipe run whole on loopback (bench/fleet_loopback.sh): a PostgreSQL catalog, a
Prefect server, a process work pool with two workers; two shards queued as flow runs, one dataset
built; the result equals a single-process run of the same config.

With its two vLLM OpenAI servers the script takes 6-9 minutes on 2 CPU cores, too slow for CI: it
is a bench script (results in bench/RESULTS.md). This test runs the same script and recipe with
the simulated policy on both shards in place of the servers (about 2 minutes). The README shows the
recipe's commands; the first test keeps them the ones the script runs.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "fleet_loopback.sh"


def recipe_lines() -> list[str]:
    """The script's lines between its recipe markers, each stripped, comments left out."""
    text = SCRIPT.read_text()
    body = text.split("# --- recipe (the README's commands) ---\n")[1].split("# --- end of recipe ---")[0]
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]


def run_script(env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Runs the fleet script in its own process group; past the timeout it is stopped with TERM,
    so that its exit trap stops the servers, workers and PostgreSQL cluster it started."""
    script = subprocess.Popen(["bash", str(SCRIPT)], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = script.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGTERM)
        try:
            stdout, stderr = script.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            stdout, stderr = script.communicate()
        pytest.fail(f"bench/fleet_loopback.sh ran past {timeout} s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return script.returncode, stdout, stderr


def test_the_readme_shows_the_commands_the_fleet_script_runs():
    readme = " ".join((ROOT / "README.md").read_text().split())
    missing = [line for line in recipe_lines() if " ".join(line.split()) not in readme]
    assert not missing, f"README.md lacks these lines of bench/fleet_loopback.sh's recipe: {missing}"


@pytest.mark.slow
def test_a_loopback_fleet_equals_a_single_process_run(prefect_server_env, tmp_path):
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):  # the script starts a throwaway cluster
        (pytest.fail if os.environ.get("CI") else pytest.skip)("postgresql not installed (run .ci/run)")
    fleet_dir = tmp_path / "fleet"
    env = {**prefect_server_env, "FLEET_DIR": str(fleet_dir), "FLEET_POOL": "prmforge-loopback-test",
           "FLEET_POLICY": "simulated"}
    for name in ("PRMFORGE_CATALOG", "PRMFORGE_DATA_PATH", "PRMFORGE_DATA_DIR"):
        env.pop(name, None)
    returncode, stdout, stderr = run_script(env, timeout=900)
    assert returncode == 0, f"{stdout[-4000:]}\n{stderr[-4000:]}"
    lines = stdout.splitlines()
    assert lines[-1] == "fleet equals single", stdout[-3000:]
    counts = {match[1]: int(match[2]) for line in lines if (match := re.match(r"([\w ./]+): (\d+) rows", line))}
    assert counts["problems"] == 8
    assert counts["nodes"] > 0 and counts["step_labels"] == counts["nodes"]
    assert counts["dataset v1 train.parquet"] > 0 and counts["dataset v1 test.parquet"] > 0
    # Both workers joined the pool, and the two shards ran as flow runs on them, each once, in the data
    # folder of the worker that took it: the flow's stage lines show in the worker's log whatever
    # Prefect's log level. Which worker takes which run is the pool's choice: on a busy machine one
    # worker can finish the first shard and take the second before the other polls.
    logs = [(fleet_dir / f"worker-{i}.log").read_text() for i in range(2)]
    assert all(f"Worker 'worker-{i}' started!" in log for i, log in enumerate(logs)), logs
    published = [log.count("[stage] publish") for log in logs]
    assert sum(published) == 2, logs
    assert all((fleet_dir / f"worker-{i}" / "cache").is_dir() for i, runs in enumerate(published) if runs)
    # The shards and the dataset build used the throwaway PostgreSQL catalog; the single run its own.
    [catalog] = [line for line in lines if line.startswith("fleet catalog: ")]
    assert re.fullmatch(r"fleet catalog: postgres:host=127\.0\.0\.1 port=\d+ dbname=prmforge user=postgres", catalog)
    assert not (fleet_dir / "builder" / "catalog.sqlite").exists()
    assert (fleet_dir / "single" / "catalog.sqlite").is_file()
