"""The critic: does a generative model trained by prmforge name first errors, and does it pick answers?

One separate pool, one dataset version, two models trained on it, measured on held-out rows:

  pool      `prmforge generate` on --pool-problems synthetic problems (2-8 steps) x --samples from
            --pool-policy (default the simulated policy: well-formed solutions with slips, wrong
            operands and copy errors), the arith verifier's verdicts and mc labels (k = 2); then
            `prmforge dataset build --labeler LABELS --references --slips 2` (default verifier:arith;
            --no-references and --slips 0 leave those out)
  base      `prmforge policy adapt --steps --adapt-steps` on the dataset's training problems (0: the
            embedded policy itself); both models start from it
  critic    `prmforge critic train --dataset V --base B --steps --critic-steps --protocol P`: the
            base fine-tuned to check one step per prompt, ok or wrong (stepwise, the default), or to
            name the first wrong step of the whole judge prompt, its positions extended to 768 (whole)
  prm       `prmforge train --dataset V --base B --steps --prm-steps`: the discriminative PRM on the same data
  first errors   a synthetic ProcessBench of --pb-rows rows (4-8 steps, half with one arithmetic
            slip, exact labels: tasks/ground_truth.py), none of them in the pool; the critic is asked
            as the judge labeller asks, in its protocol (transformers:PATH policy, greedy); the
            PRM's threshold comes from --pb-rows / 2 other rows; the trivial baseline always says "none"
  Best-of-N      --bon-samples solutions per held-out problem (4-8 steps) from --bon-policy (the
            embedded policy); the critic ranks a solution judged "none" above the others, a later
            named error above an earlier one (`critic`), or votes with weight 1 for "none" and a
            hundredth of that for a named error (`critic_vote`: majority among solutions judged right)
Intervals are 95% percentile bootstraps (2,000 resamples; rows for F1, problems for Best-of-N).
Every stage keeps its result in --work (default bench/.critic), so a rerun resumes.

Last line: `critic_first_error_f1: X`.
Usage: .venv/bin/python bench/critic.py [--pool-problems 1000 --critic-steps 400 --critic-batch-size 16
       --critic-learning-rate 5e-4 --[no-]balance --protocol stepwise|whole --pb-rows 200 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prm_quality  # noqa: E402  (the bench's shared helpers)
from prefect_server import prefect_server  # noqa: E402
from prm_quality import score_everything, stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
POOL_SEED, PB_SEED, PB_CALIBRATION_SEED, BON_SEED = 200, 9101, 9102, 9103


SERVER = contextlib.ExitStack()  # main() closes it: the server starts with the first command, if any runs


def run(work: Path, *arguments: str) -> str:
    if "PREFECT_API_URL" not in os.environ:
        SERVER.enter_context(prefect_server(work / "prefect"))  # one for every command: on a loaded machine
        # each command's own temporary server took 20-120 s to start, and once did not start at all
    return prm_quality.run(work, *arguments)


def make_pool(work: Path, args) -> int:
    config = {
        "problems": args.pool_problems, "samples": args.samples, "rollouts": 2, "seed": POOL_SEED,
        "min_steps": 2, "max_steps": 8, "policy": args.pool_policy, "test_fraction": 0.0,
        "labeler": "mc", "verifiers": ["arith"],
    }
    (work / "pool.json").write_text(json.dumps(config))
    run(work, "generate", "--config", str(work / "pool.json"), "--no-dataset")
    extra = ["--references"] * args.references + ["--slips", str(args.slips)]
    out = run(work, "dataset", "build", "--labeler", args.labels, "--test-fraction", "0.0", "--no-hnc", *extra)
    return int(out.split("dataset version ")[1].split(":")[0])


def adapted_base(work: Path, args, version: int) -> list[str]:
    """`--base DIR` for both trainings: the policy adapted to the dataset's training problems."""
    if not args.adapt_steps:
        return []
    run(work, "policy", "adapt", "--output", str(work / "adapted"), "--dataset", str(version),
        "--steps", str(args.adapt_steps), "--json")
    return ["--base", str(work / "adapted")]


def train_critic(work: Path, args, version: int, base: list[str]) -> dict:
    critic = json.loads(run(work, "critic", "train", "--dataset", str(version), *base, "--steps", str(args.critic_steps),
                            "--batch-size", str(args.critic_batch_size), "--learning-rate", str(args.critic_learning_rate),
                            "--protocol", args.protocol, "--threads", str(args.threads),
                            *(["--balance"] if args.balance else []), "--json"))
    return {"critic": critic["path"], "critic_metrics": critic["metrics"]}


def train_prm(work: Path, args, version: int, base: list[str]) -> dict:
    prm = json.loads(run(work, "train", "--dataset", str(version), *base, "--steps", str(args.prm_steps),
                         "--batch-size", str(args.batch_size), "--json"))
    return {"prm": prm["path"]}


def pool_questions(args) -> set[str]:
    """The pool's questions: no held-out row or problem may be one of them."""
    from tasks.synthetic import generate_problems

    return {problem.question for problem in generate_problems(args.pool_problems, POOL_SEED, 2, 8)}


def held_out_rows(args, count: int, seed: int):
    from tasks.ground_truth import synthetic_processbench

    pool = pool_questions(args)
    return [row for row in synthetic_processbench(count + count // 4, seed) if row.problem not in pool][:count]


def judged(critic: str, rows) -> list:
    from tasks.critic import judge_rows
    from tasks.policies.registry import load_policy

    began = time.perf_counter()
    found = judge_rows(load_policy(f"transformers:{critic}"), rows)
    print(f"  judged {len(rows)} solutions with the critic ({time.perf_counter() - began:.0f} s)", flush=True)
    return found


def first_error_table(work: Path, args, models: dict) -> dict:
    from tasks.critic import judged_first_error_f1
    from tasks.prm.evaluate import choose_threshold, predicted_first_error
    from tasks.prm.stats import bootstrap

    calibration = held_out_rows(args, args.pb_rows // 2, PB_CALIBRATION_SEED)
    measured = held_out_rows(args, args.pb_rows, PB_SEED)
    labels = [row.label for row in measured]
    critic = stage(work, f"pb_critic_{args.tag}", lambda: judged(models["critic"], measured))
    scores = stage(work, "pb_prm", lambda: score_everything({"prm": models["prm"]},
                                                            [(r.problem, r.steps) for r in calibration + measured]))["prm"]
    threshold = choose_threshold([r.label for r in calibration], scores[: len(calibration)])
    prm = [predicted_first_error(per_step, threshold) for per_step in scores[len(calibration) :]]
    found = {"critic": critic, "prm": prm, "always none": [-1] * len(measured)}
    table = {}
    for name, predicted in found.items():
        pairs = list(zip(labels, predicted, strict=True))
        interval = bootstrap(pairs, lambda sample: judged_first_error_f1(*zip(*sample)) if sample else None)
        wrong = [hit == label for label, hit in pairs if label != -1]
        right = [hit == label for label, hit in pairs if label == -1]
        table[name] = {"f1": interval, "erroneous": sum(wrong) / len(wrong), "correct": sum(right) / len(right),
                       "unreadable": sum(hit is None for hit in predicted)}
    return table | {"threshold": threshold, "rows": len(measured)}


def sample_best_of_n(args) -> dict:
    from schemas.records import SamplingParams
    from tasks.policies.registry import load_policy
    from tasks.splitting import DEFAULT_BOUNDARY
    from tasks.synthetic import generate_problems
    from tasks.tree import sample_solutions

    pool = pool_questions(args)
    problems = [p for p in generate_problems(args.bon_problems + 50, BON_SEED, 4, 8) if p.question not in pool]
    problems = problems[: args.bon_problems]
    policy = load_policy(args.bon_policy)
    solutions, _ = sample_solutions(policy, problems, args.bon_samples, SamplingParams(seed=BON_SEED, max_new_tokens=200),
                                    DEFAULT_BOUNDARY)
    if hasattr(policy, "close"):
        policy.close()
    questions = {problem.problem_id: problem.question for problem in problems}
    return {"solutions": [[s.problem_id, questions[s.problem_id], list(s.steps), s.final_answer, s.is_correct]
                          for s in solutions]}


def critic_value(first_error: int | None, steps: int) -> float:
    """Higher is better: "none" above everything, then the later the named error the better.

    >>> critic_value(-1, 4), critic_value(3, 4), critic_value(0, 4), critic_value(None, 4)
    (1.0, 0.008, 0.002, 0.0)
    """
    if first_error is None:
        return 0.0
    return 1.0 if first_error == -1 else round(0.01 * (first_error + 1) / (steps + 1), 6)


def best_of_n_table(work: Path, args, models: dict) -> dict:
    from tasks.processbench import ProcessBenchRow
    from tasks.prm.evaluate import Candidate, best_of_n, best_of_n_sizes

    samples = stage(work, "bon_samples", lambda: sample_best_of_n(args))["solutions"]
    rows = [ProcessBenchRow(str(index), question, tuple(steps), -1) for index, (_, question, steps, _, _) in enumerate(samples)]
    verdicts = stage(work, f"bon_critic_{args.tag}", lambda: judged(models["critic"], rows))
    groups: dict[str, list] = {}
    for (pid, _, steps, answer, correct), verdict in zip(samples, verdicts, strict=True):
        value = critic_value(verdict, len(steps))
        groups.setdefault(pid, []).append(Candidate(answer, bool(correct), {"critic": value}))
    curves = best_of_n(list(groups.values()), ["critic"], best_of_n_sizes(args.bon_samples), 256, 0,
                       weighted_votes={"critic_vote": "critic"})
    judged_none = sum(verdict == -1 for verdict in verdicts)
    none_right = sum(verdict == -1 and s[4] for verdict, s in zip(verdicts, samples))
    return {"curves": curves, "problems": len(groups), "judged_none": judged_none, "none_correct": none_right,
            "solutions": len(samples), "correct": sum(s[4] for s in samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-problems", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--pool-policy", default="simulated:error_rate=0.15,recovery_rate=0.1")
    parser.add_argument("--labels", default="verifier:arith", help="the dataset's labeller (dataset build --labeler)")
    parser.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                        help="the training problems' worked solutions in the dataset (dataset build --references)")
    parser.add_argument("--slips", type=int, default=2, help="slipped copies per training solution (dataset build --slips)")
    parser.add_argument("--adapt-steps", type=int, default=300, help="policy adapt steps for the base (0: not adapted)")
    parser.add_argument("--protocol", default="stepwise", choices=("stepwise", "whole"),
                        help="the critic's protocol (critic train --protocol)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the critic's training")
    parser.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                        help="critic train --balance: as many wrong verdicts as right ones (stepwise: steps)")
    parser.add_argument("--critic-steps", type=int, default=400)
    parser.add_argument("--critic-batch-size", type=int, default=16, help="texts per step (stepwise: one per step checked)")
    parser.add_argument("--critic-learning-rate", type=float, default=5e-4)
    parser.add_argument("--prm-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8, help="the PRM's solutions per step")
    parser.add_argument("--pb-rows", type=int, default=200)
    parser.add_argument("--bon-problems", type=int, default=60)
    parser.add_argument("--bon-samples", type=int, default=8)
    parser.add_argument("--bon-policy", default="vllm:embedded")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".critic")
    args = parser.parse_args()
    args.tag = (f"{args.protocol}_lr{args.critic_learning_rate:g}_s{args.critic_steps}x{args.critic_batch_size}"
                + "_balanced" * args.balance)  # the critic's stages
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    began = time.perf_counter()

    with SERVER:
        version = stage(work, "dataset", lambda: make_pool(work, args))
        base = stage(work, "base", lambda: adapted_base(work, args, version))
        models = stage(work, f"critic_{args.tag}", lambda: train_critic(work, args, version, base))
        models |= stage(work, "prm", lambda: train_prm(work, args, version, base))
    errors = first_error_table(work, args, models)
    metrics = models["critic_metrics"]
    print(f"\ncritic ({args.protocol}, base {'adapted ' + str(args.adapt_steps) + ' steps' if base else 'embedded'}): "
          f"{metrics['examples']} solutions of dataset v{version} ({args.labels} labels, none share "
          f"{metrics['none_share']}), {args.critic_steps} steps of {args.critic_batch_size}, loss {metrics['first_loss']} -> "
          f"{metrics['final_loss']}, {metrics['seconds']:.0f} s")
    print(f"first-error identification, synthetic ProcessBench ({errors['rows']} held-out rows, half erroneous; "
          f"the PRM's threshold {errors['threshold']:.4f} from {args.pb_rows // 2} other rows)")
    print(f"| model | F1 [95% CI] | acc erroneous | acc correct | unreadable |\n|---|---|---|---|---|")
    for name in ("critic", "prm", "always none"):
        row = errors[name]
        print(f"| {name} | {row['f1'].shown()} | {row['erroneous']:.3f} | {row['correct']:.3f} | {row['unreadable']} |")

    bon = best_of_n_table(work, args, models)
    curves = bon["curves"]
    sizes = [point.n for point in curves["oracle"]]
    print(f"\nBest-of-N on {bon['problems']} held-out problems (4-8 steps), {args.bon_samples} solutions each from "
          f"{args.bon_policy} ({bon['correct']} of {bon['solutions']} right); the critic judged {bon['judged_none']} "
          f"'none', {bon['none_correct']} of them right; accuracy [95% CI over problems]")
    print("| method | " + " | ".join(f"N={n}" for n in sizes) + " |\n|---|" + "---|" * len(sizes))
    for method in ("oracle", "majority", "random", "critic", "critic_vote"):
        by_n = {point.n: point for point in curves[method]}
        print(f"| {method} | " + " | ".join(f"{by_n[n].accuracy:.3f} [{by_n[n].low:.2f},{by_n[n].high:.2f}]" for n in sizes) + " |")
    print(f"total {time.perf_counter() - began:.0f} s (stages cached in {work})")
    print(f"critic_first_error_f1: {errors['critic']['f1'].estimate:.3f}")


if __name__ == "__main__":
    main()
