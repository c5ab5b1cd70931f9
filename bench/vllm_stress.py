"""vLLM-CPU under the rollout benchmark's workload, many times in a row: does the engine survive?

The engine died in 1 of 2 runs of bench/rollout_throughput.py (`EngineDeadError`, root cause
`RuntimeError: CPU Generator does not use offset`): with hundreds of seeded requests in flight the
scheduler split a waiting prompt across steps (chunked prefill), vLLM then rewinds that request's
generator with `set_offset`, and a CPU generator has no offset. VLLMPolicy turns chunked prefill
off on CPU (tasks/policies/vllm_policy.py). This script runs the same workload (P problems x S
solutions x K rollouts per step, every step prefix labelled with `label_mc` at the policy's 256
prefixes per call) `--runs` times, each on a fresh engine with `max_restarts=0`, so any death
counts. With `--control N` it also runs N times with chunked prefill on (the old setting): the
deaths it sees there show the workload still triggers the bug, and the surviving runs give the
throughput ratio of the two settings, measured in the same run.

Usage: .venv/bin/python bench/vllm_stress.py [--runs 10 --control 2 --problems 32 --samples 4 --rollouts 8]
Last line: `vllm_stress_runs_without_engine_death: N/RUNS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from schemas.config import GenerateConfig
from schemas.records import SamplingParams
from tasks.labelers.mc import label_mc, label_targets
from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, sample_solutions


@dataclasses.dataclass
class Outcome:
    setting: str
    run: int
    died: str | None
    seconds: float
    tokens: int


def one_run(model: Path, targets, rollouts: int, params: SamplingParams, run: int, chunked: bool) -> Outcome:
    from tasks.policies.vllm_policy import VLLMPolicy

    setting = "chunked prefill on (old)" if chunked else "default (chunked prefill off)"
    options = {"enable_chunked_prefill": True} if chunked else {}
    with VLLMPolicy(model, max_restarts=0, **options) as policy:
        policy.engine()
        began = time.perf_counter()
        try:
            result = label_mc(policy, targets, rollouts, dataclasses.replace(params, seed=params.seed + run))
        except Exception as error:  # the engine died: PolicyUnavailable names the cause
            return Outcome(setting, run, str(error).splitlines()[0][:160], time.perf_counter() - began, 0)
        return Outcome(setting, run, None, time.perf_counter() - began, result.usage.generated_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--control", type=int, default=2, help="runs with chunked prefill on, for comparison")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=EMBEDDED_POLICY_DIR)
    args = parser.parse_args()

    from tasks.policies.transformers_policy import TransformersPolicy

    config = GenerateConfig(problems=args.problems, samples=args.samples, rollouts=args.rollouts, seed=args.seed)
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens, seed=config.seed * 2)
    problems = generate_problems(config.problems, config.seed, config.min_steps, config.max_steps)
    solutions, _ = sample_solutions(TransformersPolicy(args.model), problems, config.samples, params, config.step_boundary)
    tree = build_tree(solutions)
    nodes = {node.node_id: node for node in tree}
    targets = [  # as bench/rollout_throughput.py: a step that states the answer needs no rollouts
        target for target in label_targets(tree, nodes, {problem.problem_id: problem for problem in problems})
        if not (target.node.is_terminal and target.node.final_answer is not None)
    ]
    print(f"workload: {len(targets)} step prefixes x {args.rollouts} rollouts, {args.runs} runs "
          f"(+{args.control} with chunked prefill on), each on a fresh engine", flush=True)

    rollout_params = dataclasses.replace(params, seed=config.seed * 2 + 1)
    outcomes = []
    for run in range(args.runs):
        outcomes.append(one_run(args.model, targets, args.rollouts, rollout_params, run, chunked=False))
        print(f"  {outcomes[-1]}", flush=True)
    for run in range(args.control):
        outcomes.append(one_run(args.model, targets, args.rollouts, rollout_params, run, chunked=True))
        print(f"  {outcomes[-1]}", flush=True)

    print()
    print(f"{'setting':<32} {'runs':>5} {'deaths':>7} {'tokens/s (survivors)':>21}")
    rates = {}
    for setting in dict.fromkeys(outcome.setting for outcome in outcomes):
        mine = [outcome for outcome in outcomes if outcome.setting == setting]
        survivors = [outcome for outcome in mine if outcome.died is None]
        rate = sum(o.tokens for o in survivors) / sum(o.seconds for o in survivors) if survivors else float("nan")
        rates[setting] = rate
        print(f"{setting:<32} {len(mine):>5} {len(mine) - len(survivors):>7} {rate:>21.0f}")
    for outcome in outcomes:
        if outcome.died:
            print(f"death: {outcome.setting}, run {outcome.run}: {outcome.died}")
    if len(rates) == 2:
        default, old = rates.values()
        print(f"default_over_chunked_prefill_tokens_per_s: {default / old:.2f}")
    survived = sum(outcome.died is None for outcome in outcomes if not outcome.setting.startswith("chunked"))
    print(f"vllm_stress_runs_without_engine_death: {survived}/{args.runs}")


if __name__ == "__main__":
    main()
