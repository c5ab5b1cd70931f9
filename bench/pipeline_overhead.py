"""What the generate pipeline costs beside the policy: `prmforge generate` against a bare loop.

For each size, two fresh processes do the same work on the simulated policy:
- the flow: `prmforge generate` as a user runs it (Prefect, its temporary API server, the
  generation cache, the quality gates, the DuckLake warehouse, the dataset export);
- the bare loop (the baseline, measured in the same run): plain Python calling the same policy,
  building the same tree and the same Monte Carlo labels (tasks.tree, tasks.labelers.mc), with
  no cache, no gates and no warehouse.
Each wall time runs from the process's spawn to its exit (imports included). Stages come from the
`[stage] ...` lines the flow prints (flows/progress.py), timed as they arrive; `exit` runs from the
first line of the summary (the flow has returned) to the process's end. Peak memory is each
process's own maximum resident set, and CPU seconds its user + system time with the children it
waited for (Prefect's temporary server), both from wait4: on a shared machine CPU seconds are the
steadier figure. A tiny warm-up run first migrates the Prefect database that every later run
reuses, as a user's `.prefect` would be.

With --server the flows talk to one `prefect server` started before any timing (as a nightly
deployment runs them), so neither the temporary server's start nor its shutdown is in a run.

Usage: PYTHONPATH=. .venv/bin/python bench/pipeline_overhead.py [--sizes 1000,4000,16000] [--headline 4000] [--server]
Quick: --sizes 250 --headline 250. Ends with `pipeline_flow_over_bare: X` at the headline size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefect_server import prefect_server  # noqa: E402

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
STAGES = ("start-up", "ingest", "sampling", "labelling", "gates", "publish", "dataset build", "exit")
_ANNOUNCEMENTS = {  # announcement prefix (flows/progress.py) -> stage
    "ingest": "ingest", "sampling solutions": "sampling", "labelling steps": "labelling",
    "verifying steps": "labelling", "consensus": "labelling", "quality gates": "gates",
    "publish": "publish", "dataset build": "dataset build",
}


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float  # user + system, of the process and the children it waited for (Prefect's server)
    peak_rss_mib: float
    stages: dict[str, float] = field(default_factory=dict)
    output: str = ""


def _stage_of(announcement: str) -> str:
    return next((stage for prefix, stage in _ANNOUNCEMENTS.items() if announcement.startswith(prefix)), announcement)


def measure(command: list[str], env: dict) -> Measured:
    """Run a command to its end; time the stages it announces on stderr and read its peak RSS."""
    began = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marks: list[tuple[float, str]] = [(0.0, "start-up")]
    lines: list[str] = []

    def read_stderr() -> None:  # a thread, so every line gets its time as it arrives
        for line in process.stderr:
            lines.append(line)
            if line.startswith("[stage] "):
                marks.append((time.monotonic() - began, _stage_of(line.removeprefix("[stage] ").strip())))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    printed: list[str] = []
    for line in process.stdout:
        if line.startswith("run ") and marks[-1][1] != "exit":  # prmforge's summary: the flow has returned
            marks.append((time.monotonic() - began, "exit"))
        printed.append(line)
    stdout = "".join(printed)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - began
    reader.join(timeout=30)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{''.join(lines[-30:])}{stdout[-2000:]}")
    stages: Counter[str] = Counter()
    ends = [at for at, _ in marks[1:]] + [seconds]
    for (at, stage), end in zip(marks, ends, strict=True):
        stages[stage] += end - at
    return Measured(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, dict(stages), stdout)


def bare_loop(problems: int, samples: int, rollouts: int, policy_spec: str, seed: int) -> None:
    """The baseline's process: the policy, the tree and the labels in plain Python. Prints JSON."""
    sys.path.insert(0, str(ROOT))
    from schemas.config import GenerateConfig
    from schemas.records import SamplingParams
    from tasks.labelers.mc import label_mc, label_targets
    from tasks.policies.registry import load_policy
    from tasks.synthetic import generate_problems
    from tasks.tree import build_tree, sample_solutions

    config = GenerateConfig(problems=problems, samples=samples, rollouts=rollouts, policy=policy_spec, seed=seed)

    def sampling_params(config: GenerateConfig, purpose: str) -> SamplingParams:
        """flows.generate.sampling_params, without importing Prefect (the flows package does)."""
        return SamplingParams(temperature=config.temperature, top_p=config.top_p,
                              max_new_tokens=config.max_new_tokens,
                              seed=config.seed * 2 + {"solutions": 0, "rollouts": 1}[purpose])

    policy = load_policy(config.policy)
    loaded = generate_problems(config.problems, config.seed, config.min_steps, config.max_steps)
    solutions, sample_usage = sample_solutions(policy, loaded, config.samples, sampling_params(config, "solutions"))
    tree = build_tree(solutions)
    targets = label_targets(tree, {node.node_id: node for node in tree}, {p.problem_id: p for p in loaded})
    labelled = label_mc(policy, targets, config.rollouts, sampling_params(config, "rollouts"))
    print(json.dumps({"labels": len(labelled.labels), "rollouts": len(labelled.rollouts),
                      "policy_seconds": sample_usage.seconds + labelled.usage.seconds}))


def _flow_figures(data_dir: Path) -> dict:
    """The run row and the counts the flow stored (read after its process ended)."""
    sys.path.insert(0, str(ROOT))
    from schemas.config import WarehouseConfig
    from warehouse.connection import connect

    connection = connect(WarehouseConfig(data_dir=data_dir))
    try:
        policy_seconds, labels = connection.execute(
            "SELECT policy_seconds, n_labels FROM runs WHERE status = 'completed'").fetchone()
        rollouts = connection.execute("SELECT count(*) FROM rollouts").fetchone()[0]
    finally:
        connection.close()
    return {"policy_seconds": policy_seconds, "labels": labels, "rollouts": rollouts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,4000,16000", help="Comma-separated problem counts.")
    parser.add_argument("--headline", type=int, default=4000, help="The size whose flow/bare ratio ends the output.")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--policy", default="simulated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server", action="store_true",
                        help="run the flows against one running `prefect server` (started before any timing, as a "
                             "nightly deployment has it) instead of each run's temporary server")
    parser.add_argument("--keep", type=Path, help="Keep the warehouses under this folder (to compare contents).")
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)  # internal: run the bare loop at this size
    args = parser.parse_args()
    if args.bare is not None:
        bare_loop(args.bare, args.samples, args.rollouts, args.policy, args.seed)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.headline not in sizes:
        parser.error(f"--headline {args.headline} is not one of --sizes {args.sizes}")

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="prmforge-overhead-"))
    (workdir / "prefect").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect"), "PYTHONPATH": str(ROOT)}
    with contextlib.ExitStack() as server:
        if args.server:
            env["PREFECT_API_URL"] = server.enter_context(prefect_server(workdir / "prefect"))
        compare(args, sizes, workdir, env)


def compare(args, sizes: list[int], workdir: Path, env: dict) -> None:
    def generate(problems: int, name: str) -> tuple[Measured, Path]:
        data_dir = workdir / name
        command = [PRMFORGE, "generate", "--problems", str(problems), "--samples", str(args.samples),
                   "--rollouts", str(args.rollouts), "--seed", str(args.seed), "--policy", args.policy,
                   "--data-dir", str(data_dir)]
        return measure(command, env), data_dir

    warm_up, _ = generate(8, "warm-up")
    sql = measure([PRMFORGE, "sql", "select count(*) from step_labels", "--data-dir", str(workdir / "warm-up")], env)
    print(f"workload: problems x {args.samples} samples x {args.rollouts} rollouts/step, policy {args.policy}, "
          f"seed {args.seed}; Prefect: " + ("one running server (its CPU is not in the flow's)" if args.server
                                           else "each run's temporary server"))
    print(f"warm-up run (8 problems, migrates the Prefect database): {warm_up.seconds:.1f} s; "
          f"`prmforge sql` start to exit: {sql.seconds:.2f} s wall, {sql.cpu_seconds:.2f} s CPU", flush=True)

    rows = []
    for problems in sizes:
        bare = measure([sys.executable, __file__, "--bare", str(problems), "--samples", str(args.samples),
                        "--rollouts", str(args.rollouts), "--policy", args.policy, "--seed", str(args.seed)], env)
        bare_counts = json.loads(bare.output.strip().splitlines()[-1])
        flow, data_dir = generate(problems, f"flow-{problems}")
        counts = _flow_figures(data_dir)
        if (counts["labels"], counts["rollouts"]) != (bare_counts["labels"], bare_counts["rollouts"]):
            raise SystemExit(f"at {problems} problems the flow stored {counts} but the bare loop made {bare_counts}")
        rows.append((problems, flow, bare, counts, bare_counts))
        stages = ", ".join(f"{stage} {flow.stages.get(stage, 0.0):.1f}" for stage in STAGES)
        print(f"{problems:,} problems: flow {flow.seconds:.1f} s wall / {flow.cpu_seconds:.1f} s CPU, "
              f"bare loop {bare.seconds:.1f} s / {bare.cpu_seconds:.1f} s CPU; stages (s): {stages}", flush=True)

    print()
    print("| problems | labelled steps | rollouts | bare s (CPU s) | its policy s | flow s (CPU s) | its policy s "
          "| flow / bare (CPU) | flow ms per step (CPU) | flow peak MiB | bare peak MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for problems, flow, bare, counts, bare_counts in rows:
        labels = counts["labels"]
        print(f"| {problems:,} | {labels:,} | {counts['rollouts']:,} | {bare.seconds:.1f} ({bare.cpu_seconds:.1f}) | "
              f"{bare_counts['policy_seconds']:.1f} | {flow.seconds:.1f} ({flow.cpu_seconds:.1f}) | "
              f"{counts['policy_seconds']:.1f} | {flow.seconds / bare.seconds:.2f} "
              f"({flow.cpu_seconds / bare.cpu_seconds:.2f}) | {1000 * flow.seconds / labels:.3f} "
              f"({1000 * flow.cpu_seconds / labels:.3f}) | {flow.peak_rss_mib:.0f} | {bare.peak_rss_mib:.0f} |")
    print()
    print("flow stages, wall seconds (share of the flow's wall):")
    print("| problems | " + " | ".join(STAGES) + " |")
    print("|---:|" + "---:|" * len(STAGES))
    for problems, flow, *_ in rows:
        cells = [f"{flow.stages.get(stage, 0.0):.1f} ({flow.stages.get(stage, 0.0) / flow.seconds:.0%})" for stage in STAGES]
        print(f"| {problems:,} | " + " | ".join(cells) + " |")
    unknown = sorted({stage for _, flow, *_ in rows for stage in flow.stages} - set(STAGES))
    if unknown:
        print(f"(other announcements: {', '.join(unknown)})")

    print()
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        def per_step(row, cpu: bool) -> float:
            return (row[1].cpu_seconds if cpu else row[1].seconds) / row[3]["labels"]

        print(f"cost per labelled step at {last[0]:,} over {first[0]:,}: {per_step(last, False) / per_step(first, False):.2f} "
              f"wall, {per_step(last, True) / per_step(first, True):.2f} CPU")
        steps_growth = last[3]["labels"] / first[3]["labels"]
        print(f"labelled steps grew {steps_growth:.1f}x; peak memory grew {last[1].peak_rss_mib / first[1].peak_rss_mib:.2f}x "
              f"in the flow, {last[2].peak_rss_mib / first[2].peak_rss_mib:.2f}x in the bare loop")
    headline = next(row for row in rows if row[0] == args.headline)
    gates = headline[1].stages.get("gates", 0.0)
    print(f"at {args.headline:,}: quality gates {gates:.1f} s = {gates / headline[1].seconds:.1%} of the flow's wall; "
          f"flow / bare in CPU seconds {headline[1].cpu_seconds / headline[2].cpu_seconds:.2f}")
    print(f"pipeline_flow_over_bare: {headline[1].seconds / headline[2].seconds:.2f}")

if __name__ == "__main__":
    main()
