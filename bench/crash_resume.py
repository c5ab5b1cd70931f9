"""Kill `prmforge generate` with SIGKILL at random moments; rerun until done; compare warehouses.

Each trial starts a fresh warehouse, kills the run at a random moment (sometimes twice), checks
that a reader sees either nothing of the run or all of it, reruns to completion, and compares the
warehouse's per-table row counts and content hashes with an uninterrupted reference run.
A Prefect server on 127.0.0.1 serves every run, so a run does not pay for a temporary server.

Usage: .venv/bin/python bench/crash_resume.py [--trials 20] [--policy simulated:error_rate=0.2]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PRMFORGE = str(Path(sys.executable).parent / "prmforge")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit("the Prefect server did not start within 120 s")


def generate_command(args, data_dir: Path) -> list[str]:
    return [PRMFORGE, "generate", "--problems", str(args.problems), "--samples", str(args.samples),
            "--rollouts", str(args.rollouts), "--seed", "7", "--policy", args.policy, "--data-dir", str(data_dir)]


def run(command: list[str], env: dict, kill_after: float | None) -> tuple[int, str]:
    """Run a command; SIGKILL it after `kill_after` seconds. Returns (exit code, last stage seen)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=ROOT)
    stages: list[str] = []
    deadline = None if kill_after is None else time.monotonic() + kill_after
    os.set_blocking(process.stderr.fileno(), False)
    while process.poll() is None:
        line = process.stderr.readline()
        if line.startswith("[stage] "):
            stages.append(line.removeprefix("[stage] ").strip())
        if deadline is not None and time.monotonic() >= deadline:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return -9, stages[-1] if stages else "start-up"
        if not line:
            time.sleep(0.02)
    for line in process.stderr.read().splitlines():
        if line.startswith("[stage] "):
            stages.append(line.removeprefix("[stage] ").strip())
    return process.returncode, "finished" if process.returncode == 0 else (stages[-1] if stages else "start-up")


def inspect(data_dir: Path) -> tuple[dict, dict, str | None]:
    """Fingerprints, duplicate keys, and a consistency problem a reader would see (or None)."""
    sys.path.insert(0, str(ROOT))
    from schemas.config import WarehouseConfig
    from warehouse.connection import connect
    from warehouse.fingerprint import duplicate_keys, table_fingerprints

    config = WarehouseConfig(data_dir=data_dir, catalog="sqlite")
    if not (data_dir / "catalog.sqlite").exists():
        return {}, {}, None
    connection = connect(config, read_only=True)
    try:
        prints, duplicates = table_fingerprints(connection), duplicate_keys(connection)
        if prints["runs"] == (0, "") and not any(count for count, _ in prints.values()):
            return prints, duplicates, None
        completed = connection.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0]
        nodes, labels, datasets = (connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                                   for t in ("nodes", "step_labels", "datasets"))
        problem = None
        if completed == 0 and (nodes or labels or datasets):
            problem = f"rows visible without a completed run: {nodes} nodes, {labels} labels, {datasets} datasets"
        if completed and (labels != nodes or datasets != 1):
            problem = f"half a run visible: {nodes} nodes, {labels} labels, {datasets} datasets"
        if datasets:
            path = Path(connection.execute("SELECT path FROM datasets").fetchone()[0])
            if not (path / "train.parquet").exists():
                problem = f"dataset row without its export at {path}"
        return prints, duplicates, problem
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--problems", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--policy", default="simulated:error_rate=0.2")
    parser.add_argument("--seed", type=int, default=0, help="seed for the kill times")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="prmforge-crash-"))
    server, api_url = start_prefect_server(workdir / "prefect")
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(workdir / "prefect")}
    rng = random.Random(args.seed)
    try:
        began = time.perf_counter()
        code, _ = run(generate_command(args, workdir / "reference"), env, None)
        reference_seconds = time.perf_counter() - began
        if code != 0:
            raise SystemExit(f"the reference run failed with exit code {code}")
        reference, _, _ = inspect(workdir / "reference")
        print(f"reference run: {reference_seconds:.1f} s; tables: "
              + ", ".join(f"{name}={count}" for name, (count, _) in reference.items()))

        kills_by_stage: Counter[str] = Counter()
        kills, equal, problems = 0, 0, []
        for trial in range(args.trials):
            data_dir = workdir / f"trial-{trial}"
            for _ in range(1 + (rng.random() < 0.3)):  # sometimes kill the resumed run too
                code, stage = run(generate_command(args, data_dir), env, rng.uniform(0.5, reference_seconds * 1.1))
                if code == -9:
                    kills += 1
                    kills_by_stage[stage] += 1
                _, duplicates, problem = inspect(data_dir)
                if problem or any(duplicates.values()):
                    problems.append(f"trial {trial} after kill in {stage}: {problem or duplicates}")
            code, _ = run(generate_command(args, data_dir), env, None)
            final, duplicates, problem = inspect(data_dir)
            same = code == 0 and final == reference and not any(duplicates.values()) and problem is None
            equal += same
            if not same:
                differing = [t for t in reference if final.get(t) != reference[t]]
                problems.append(f"trial {trial}: exit {code}, tables differ: {differing}, {problem or ''}")
        print(f"kills: {kills} (by stage at the moment of the kill: {dict(sorted(kills_by_stage.items()))})")
        print(f"trials whose final warehouse equals the reference: {equal} of {args.trials}")
        for problem in problems:
            print(f"PROBLEM {problem}")
        print(f"crash_resume_trials_equal: {equal}/{args.trials}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
