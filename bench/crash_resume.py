"""Kill `prmforge generate` with SIGKILL in every stage; rerun until done; compare warehouses.

Each trial starts a fresh warehouse. Its first run is killed in one stage and its resumed run in
another, at a random moment within the stage (up to as long as the stage took in an uninterrupted
reference run); a third run finishes the work. After every kill, every snapshot a reader can open
(the current one, and each earlier one by time travel) must hold none of the run or all of it.
The final warehouse must equal the reference: the same row counts and content hashes per table,
and no duplicate keys.

Only real kills count: a run that finished before its kill time was not killed. The stage of a
kill is the last `[stage] ...` line the run printed on stderr before it died (flows/progress.py).
The check fails (exit 1) when a final warehouse differs, a reader could see part of a run, a run
fails on its own, fewer than --min-kills real kills happened, or a stage was never hit.
A Prefect server on 127.0.0.1 serves every run, so a run does not pay for a temporary server.

Usage: .venv/bin/python bench/crash_resume.py [--trials 20] [--min-kills 20] [--policy simulated:error_rate=0.2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PRMFORGE = str(Path(sys.executable).parent / "prmforge")

# The stages, and the announcements (flows/progress.py) that belong to each.
STAGES = ("ingest", "sampling", "labelling", "gates", "publish", "dataset build")
_ANNOUNCEMENTS = {
    "ingest": "ingest", "sampling solutions": "sampling", "labelling steps": "labelling",
    "verifying steps": "labelling", "consensus": "labelling", "quality gates": "gates",
    "publish": "publish", "dataset build": "dataset build",
}


def stage_of(announcement: str) -> str:
    return next((stage for prefix, stage in _ANNOUNCEMENTS.items() if announcement.startswith(prefix)), announcement)


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


@dataclass
class Outcome:
    code: int
    killed: bool  # died of our SIGKILL (a run that exited first was not killed, whatever the timer said)
    stage: str  # the last stage it announced: where it died, or "start-up" before the first
    seconds: float
    stages: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, stage) as announced
    tail: str = ""


def run(command: list[str], env: dict, kill_in: str | None = None, delay: float = 0.0) -> Outcome:
    """Run a command; SIGKILL its process group `delay` seconds after it announces stage `kill_in`."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=ROOT)
    began = time.monotonic()
    stages: list[tuple[float, str]] = []
    tail: list[str] = []

    def read() -> None:  # a thread, so the pipe never fills and every line gets its time
        for line in process.stderr:
            tail[:] = [*tail[-20:], line]
            if line.startswith("[stage] "):
                stages.append((time.monotonic() - began, stage_of(line.removeprefix("[stage] ").strip())))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    kill_at = None
    while process.poll() is None:
        if kill_in is not None and kill_at is None:
            entered = next((at for at, stage in list(stages) if stage == kill_in), None)
            if entered is not None:
                kill_at = began + entered + delay
        if kill_at is not None and time.monotonic() >= kill_at:
            with contextlib.suppress(ProcessLookupError):  # the whole group, before the leader is reaped
                os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    reader.join(timeout=30)  # the lines it printed before it died, up to the end of the pipe
    return Outcome(process.returncode, process.returncode == -signal.SIGKILL,
                   stages[-1][1] if stages else "start-up", time.monotonic() - began, stages, "".join(tail))


def stage_seconds(outcome: Outcome) -> dict[str, float]:
    """How long each stage took in a run: from its announcement to the next (the last to the exit)."""
    seconds: Counter[str] = Counter()
    ends = [at for at, _ in outcome.stages[1:]] + [outcome.seconds]
    for (at, stage), end in zip(outcome.stages, ends, strict=True):
        seconds[stage] += end - at
    return dict(seconds)


def _open(data_dir: Path):
    from schemas.config import WarehouseConfig
    from warehouse.connection import connect

    from warehouse.connection import WarehouseError

    if not (data_dir / "catalog.sqlite").exists():
        return None  # killed before the catalog was created
    try:
        return connect(WarehouseConfig(data_dir=data_dir, catalog="sqlite"), read_only=True)
    except WarehouseError as error:  # killed after the catalog file was made, before DuckLake set it up
        if "no warehouse in the catalog" in str(error):
            return None
        raise


def fingerprints(data_dir: Path) -> tuple[dict, dict]:
    from warehouse.fingerprint import duplicate_keys, table_fingerprints

    connection = _open(data_dir)
    if connection is None:
        return {}, {}
    try:
        return table_fingerprints(connection), duplicate_keys(connection)
    finally:
        connection.close()


def visible_problem(data_dir: Path, reference: dict[str, tuple[int, str]]) -> str | None:
    """What a reader could see of a run that is neither none of it nor all of it (None if nothing).

    Reads every snapshot of the catalog (time travel), not only the current one, and checks that
    each dataset row a reader sees has its export on disk.
    """
    import duckdb

    from schemas.tables import ALL_TABLES
    from warehouse.fingerprint import duplicate_keys, table_fingerprints

    connection = _open(data_dir)
    if connection is None:
        return None
    try:
        full = {name: count for name, (count, _) in reference.items()}
        for (snapshot,) in connection.execute("SELECT snapshot_id FROM lake.snapshots() ORDER BY 1").fetchall():
            counts = {}
            for table in ALL_TABLES:
                try:
                    counts[table.name] = connection.execute(
                        f"SELECT count(*) FROM {table.name} AT (VERSION => {snapshot})").fetchone()[0]
                except duckdb.Error:  # the table did not exist yet at that snapshot
                    counts[table.name] = 0
            if any(counts.values()) and counts != full:
                partial = {name: count for name, count in counts.items() if count != full[name]}
                return f"snapshot {snapshot} holds part of the run: {partial} (a full run has {full})"
        current, duplicates = table_fingerprints(connection), duplicate_keys(connection)
        if any(count for count, _ in current.values()) and current != reference:
            return "the current snapshot holds the run's row counts but not its content"
        if any(duplicates.values()):
            return f"duplicate keys: {duplicates}"
        if not current["datasets"][0]:
            return None  # no dataset row (or, killed before the first migration, no table at all)
        for (path,) in connection.execute("SELECT path FROM datasets").fetchall():
            if not (Path(path) / "train.parquet").exists():
                return f"dataset row without its export at {path}"
        return None
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--min-kills", type=int, default=20,
                        help="fail unless at least this many runs were really killed (lower it only for a smoke run)")
    parser.add_argument("--problems", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--policy", default="simulated:error_rate=0.2")
    parser.add_argument("--seed", type=int, default=0, help="seed for the kill moments")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="prmforge-crash-"))
    server, api_url = start_prefect_server(workdir / "prefect")
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(workdir / "prefect")}
    rng = random.Random(args.seed)
    problems: list[str] = []
    try:
        reference_run = run(generate_command(args, workdir / "reference"), env)
        if reference_run.code != 0:
            raise SystemExit(f"the reference run failed with exit code {reference_run.code}:\n{reference_run.tail}")
        reference, _ = fingerprints(workdir / "reference")
        durations = stage_seconds(reference_run)
        missing = [stage for stage in STAGES if stage not in durations]
        if missing:
            raise SystemExit(f"the reference run announced no {', '.join(missing)} stage; the stage map is out of date")
        print(f"reference run: {reference_run.seconds:.1f} s; stages: "
              + ", ".join(f"{stage} {durations[stage]:.2f} s" for stage in STAGES))
        print("reference tables: " + ", ".join(f"{name}={count}" for name, (count, _) in reference.items()))

        kills_by_stage: Counter[str] = Counter()
        kills, finished_first, equal = 0, 0, 0
        for trial in range(args.trials):
            data_dir = workdir / f"trial-{trial}"
            notes = []
            # Two kills per trial, aimed so that a few trials cover every stage.
            for aim in (STAGES[trial % len(STAGES)], STAGES[(trial + 2) % len(STAGES)]):
                outcome = run(generate_command(args, data_dir), env, aim, rng.uniform(0.0, durations[aim]))
                if outcome.killed:
                    kills += 1
                    kills_by_stage[outcome.stage] += 1
                    notes.append(f"killed in {outcome.stage} (aimed at {aim})")
                elif outcome.code == 0:
                    finished_first += 1
                    notes.append(f"finished before its kill in {aim}")
                else:
                    notes.append(f"failed on its own in {outcome.stage}")
                    problems.append(f"trial {trial}: a run aimed at {aim} failed on its own (exit {outcome.code}) "
                                    f"in {outcome.stage}: {outcome.tail.strip().splitlines()[-1:]}")
                problem = visible_problem(data_dir, reference)
                if problem:
                    problems.append(f"trial {trial} after a run aimed at {aim} ({notes[-1]}): {problem}")
            final_run = run(generate_command(args, data_dir), env)
            final, duplicates = fingerprints(data_dir)
            problem = visible_problem(data_dir, reference)
            same = final_run.code == 0 and final == reference and not any(duplicates.values()) and problem is None
            equal += same
            if not same:
                differing = [name for name in reference if final.get(name) != reference[name]]
                problems.append(f"trial {trial}: final run exit {final_run.code}, tables differ: {differing}, "
                                f"duplicates: {duplicates}, {problem or ''}")
            print(f"trial {trial}: {'; '.join(notes)}; final warehouse {'equals' if same else 'DIFFERS from'} "
                  "the reference", flush=True)

        unhit = [stage for stage in STAGES if not kills_by_stage[stage]]
        if kills < args.min_kills:
            problems.append(f"only {kills} real kills, fewer than --min-kills {args.min_kills}")
        if unhit:
            problems.append(f"no kill landed in {', '.join(unhit)}")
        print(f"kills: {kills} real (need {args.min_kills}), by stage: {dict(sorted(kills_by_stage.items()))}; "
              f"{finished_first} runs finished before their kill time (not counted)")
        print(f"trials whose final warehouse equals the reference: {equal} of {args.trials}")
        for problem in problems:
            print(f"PROBLEM {problem}")
        print(f"crash_resume_trials_equal: {equal}/{args.trials}", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        if problems:
            print(f"(warehouses kept in {workdir})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if problems or equal < args.trials else 0)


if __name__ == "__main__":
    main()
