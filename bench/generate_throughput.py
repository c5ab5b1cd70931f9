"""Labelled steps per second of the whole generate flow, and the policy's share of its wall time.

Baseline, measured in the same run: the bare policy doing the same sampling work outside the flow
(the same prompts, n and seeds), so `flow / bare policy` is the pipeline's overhead factor.

Method. Each side runs in a child process of its own, bare policy then flow, so that no process
has run the model on a second thread: in one process, calls from the flow's policy thread
(TimeoutPolicy) after the main thread had run the model took ~1.5x as long as the main thread's
own (torch keeps a pool of OpenMP threads per calling thread, and two pools share these 2 cores).
The old version of this bench ran the baseline in the flow's process and measured that, not the
flow. Each side loads and warms up the policy before its clock starts, and neither counts its
imports. The flow talks to a `prefect server` in its own process (bench/prefect_server.py), as a
nightly deployment does and as `prmforge generate`'s temporary server does, not to one in the
flow's own threads (Prefect's test harness, which the old version used).

Usage: PYTHONPATH=. .venv/bin/python bench/generate_throughput.py [--problems 16 --samples 4 --rollouts 4] [--repeats 3]
Ends with `generate_flow_over_bare: X`, the median over the pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prefect_server import prefect_server  # noqa: E402

from flows.environment import configure_prefect  # noqa: E402


def bare_seconds(config) -> float:
    """The sampling and rollout calls the flow makes, straight on the policy (the baseline)."""
    from flows.generate import sampling_params
    from tasks.labelers.mc import label_targets
    from tasks.policies.base import prompts_per_call
    from tasks.policies.registry import load_policy
    from tasks.synthetic import generate_problems
    from tasks.text_format import prompt_for
    from tasks.tree import build_tree, sample_solutions

    policy = load_policy(config.policy)
    problems = generate_problems(config.problems, config.seed, config.min_steps, config.max_steps)
    policy.generate([prompt_for(problems[0].question)], 1, sampling_params(config, "solutions"))  # warm-up
    began = time.perf_counter()
    solutions, _ = sample_solutions(policy, problems, config.samples, sampling_params(config, "solutions"), config.step_boundary)
    tree = build_tree(solutions)
    nodes = {node.node_id: node for node in tree}
    targets = [t for t in label_targets(tree, nodes, {p.problem_id: p for p in problems})
               if not (t.node.is_terminal and t.node.final_answer is not None)]
    prefixes, per_call = [t.prefix for t in targets], prompts_per_call(policy)
    for start in range(0, len(prefixes), per_call):  # the calls label_mc makes, without the answer checks
        policy.generate(prefixes[start:start + per_call], config.rollouts, sampling_params(config, "rollouts"))
    return time.perf_counter() - began


def flow_figures(config, workdir: Path) -> dict:
    """One generate flow on a fresh warehouse, against a `prefect server` in its own process."""
    configure_prefect(workdir / "prefect")
    with prefect_server(workdir / "prefect"):  # before Prefect is imported: its settings are read once
        from flows.generate import generate_flow, sampling_params
        from schemas.config import WarehouseConfig
        from tasks.policies.registry import load_policy
        from tasks.policies.timeout import TimeoutPolicy
        from tasks.synthetic import generate_problems
        from tasks.text_format import prompt_for

        policy = load_policy(config.policy)  # the flow gets this one (load_policy keeps it per process)
        first = generate_problems(1, config.seed, config.min_steps, config.max_steps)[0]
        # Warm up on a thread that ends, as the flow's calls run on threads (TimeoutPolicy), never here.
        TimeoutPolicy(policy, 600).generate([prompt_for(first.question)], 1, sampling_params(config, "solutions"))
        warehouse = WarehouseConfig(data_dir=workdir / "warehouse", catalog="sqlite")
        began = time.perf_counter()
        summary = generate_flow(config, warehouse)
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "policy_seconds": summary.policy_seconds, "labels": summary.new_labels,
            "rollouts": summary.new_rollouts, "tokens": summary.generated_tokens, "policy": policy.name}


def measured(side: str, args) -> dict:
    """One side in a child process of its own; its figures come back as the last line of its output."""
    command = [sys.executable, __file__, "--side", side, "--problems", str(args.problems), "--samples",
               str(args.samples), "--rollouts", str(args.rollouts), "--policy", args.policy]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode != 0:
        sys.exit(f"the {side} side failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--policy", default="embedded")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs, bare then flow; the median ratio is the result")
    parser.add_argument("--side", choices=("bare", "flow"), help="(internal) run one side here and print its figures as JSON")
    args = parser.parse_args()

    from schemas.config import GenerateConfig

    config = GenerateConfig(problems=args.problems, samples=args.samples, rollouts=args.rollouts, policy=args.policy)
    if args.side == "bare":
        print(json.dumps({"seconds": bare_seconds(config)}))
        return
    if args.side == "flow":
        print(json.dumps(flow_figures(config, Path(tempfile.mkdtemp(prefix="prmforge-bench-")))))
        return

    ratios = []
    for repeat in range(args.repeats):
        bare, flow = measured("bare", args), measured("flow", args)
        ratios.append(flow["seconds"] / bare["seconds"])
        if repeat == 0:
            print(f"workload: {config.problems} problems x {config.samples} samples x {config.rollouts} rollouts/step, "
                  f"policy {flow['policy']}")
            print(f"labelled steps: {flow['labels']}, rollouts: {flow['rollouts']}, tokens: {flow['tokens']}")
        print(f"pair {repeat + 1}: bare policy {bare['seconds']:.2f} s, generate flow {flow['seconds']:.2f} s "
              f"({ratios[-1]:.2f}x); policy time inside the flow {flow['policy_seconds']:.2f} s "
              f"({flow['policy_seconds'] / bare['seconds']:.2f}x the bare policy's, "
              f"{flow['policy_seconds'] / flow['seconds']:.1%} of the flow), "
              f"outside it {flow['seconds'] - flow['policy_seconds']:.2f} s; "
              f"{flow['labels'] / flow['seconds']:.2f} labelled steps/s", flush=True)
    if args.repeats > 1:
        print(f"flow / bare over {args.repeats} pairs: median {statistics.median(ratios):.2f}, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}")
    print(f"generate_flow_over_bare: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
