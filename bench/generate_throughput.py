"""Labelled steps per second of the whole generate flow, and the policy's share of its wall time.

Baseline, measured in the same run: the bare policy doing the same sampling work outside the flow
(the same prompts, n and seeds), so `flow / bare policy` is the pipeline's overhead factor.
Usage: .venv/bin/python bench/generate_throughput.py [--problems 16 --samples 4 --rollouts 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from flows.environment import configure_prefect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--policy", default="embedded")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="prmforge-bench-"))
    configure_prefect(workdir / "prefect")
    from prefect.testing.utilities import prefect_test_harness

    from flows.generate import generate_flow, sampling_params
    from schemas.config import GenerateConfig, WarehouseConfig
    from tasks.labelers.mc import label_targets
    from tasks.policies.base import prompts_per_call
    from tasks.policies.registry import load_policy
    from tasks.synthetic import generate_problems
    from tasks.text_format import prompt_for
    from tasks.tree import build_tree, sample_solutions

    config = GenerateConfig(problems=args.problems, samples=args.samples, rollouts=args.rollouts, policy=args.policy)
    policy = load_policy(config.policy)
    problems = generate_problems(config.problems, config.seed, config.min_steps, config.max_steps)
    policy.generate([prompt_for(problems[0].question)], 1, sampling_params(config, "solutions"))  # warm-up

    # Baseline: the same sampling work, called directly on the policy.
    began = time.perf_counter()
    solutions, _ = sample_solutions(policy, problems, config.samples, sampling_params(config, "solutions"), config.step_boundary)
    tree = build_tree(solutions)
    nodes = {node.node_id: node for node in tree}
    targets = [t for t in label_targets(tree, nodes, {p.problem_id: p for p in problems})
               if not (t.node.is_terminal and t.node.final_answer is not None)]
    prefixes, per_call = [t.prefix for t in targets], prompts_per_call(policy)
    for start in range(0, len(prefixes), per_call):  # the calls label_mc makes, without the answer checks
        policy.generate(prefixes[start:start + per_call], config.rollouts, sampling_params(config, "rollouts"))
    bare_seconds = time.perf_counter() - began

    with prefect_test_harness(server_startup_timeout=120):
        warehouse = WarehouseConfig(data_dir=workdir / "warehouse", catalog="sqlite")
        began = time.perf_counter()
        summary = generate_flow(config, warehouse)
        flow_seconds = time.perf_counter() - began

    steps_per_second = summary.new_labels / flow_seconds
    print(f"workload: {config.problems} problems x {config.samples} samples x {config.rollouts} rollouts/step, policy {policy.name}")
    print(f"labelled steps: {summary.new_labels}, rollouts: {summary.new_rollouts}, tokens: {summary.generated_tokens}")
    print(f"bare policy (baseline): {bare_seconds:.2f} s")
    print(f"generate flow:          {flow_seconds:.2f} s  ({flow_seconds / bare_seconds:.2f}x the bare policy)")
    print(f"policy time inside the flow: {summary.policy_seconds:.2f} s = {summary.policy_seconds / flow_seconds:.1%} of wall time")
    print(f"overhead outside the policy: {flow_seconds - summary.policy_seconds:.2f} s")
    print(f"labelled_steps_per_second: {steps_per_second:.2f}")


if __name__ == "__main__":
    main()
