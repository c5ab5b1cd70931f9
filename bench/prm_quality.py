"""From labels to PRMs: does each label source train a PRM that finds first errors and wins Best-of-N?

One pool of labelled solutions from the embedded policy, several dataset versions built from it,
one model per label source trained with the same budget, all measured on the same held-out sets:

  pool      `prmforge generate` on --pool-problems synthetic problems (2-8 steps) x --samples,
            Monte Carlo labels (k = --rollouts), the arith verifier's verdicts and consensus
            (mc_and_verifiers); then the search labeller (OmegaPRM) over the same solutions
  datasets  mc (hard and soft labels from one version), search, consensus, verifier:arith
  models    a PRM per source, the ORM (outcome only) and the implicit PRM (outcome only, scored by
            its log-likelihood ratio to the base), every one `--steps` optimizer steps of
            `--batch-size` solutions: `prmforge train ... --steps N`
  first errors   a synthetic ProcessBench of --pb-rows held-out rows (4-8 steps, half with one
            arithmetic slip, labels exact: tasks/ground_truth.py); the threshold is chosen on a
            separate calibration set of --pb-rows / 2 rows, F1 measured on the rest
  Best-of-N      --bon-samples fresh solutions per held-out problem (5-8 steps, where majority vote
            has headroom below the oracle) from the embedded policy, on --bon-problems problems
Intervals are 95% percentile bootstraps (2,000 resamples): over rows for F1, over problems for
Best-of-N, and paired over the same problems for differences. Every stage keeps its results in
--work (default bench/.prm_quality), so an interrupted run resumes where it stopped.

The last three lines: `prm_first_error_f1`, `prm_bon16_minus_majority` and
`prm_bon16_minus_majority_ci_low`, for the headline model: the PRM with the best F1 on the
calibration rows (never on the measured ones), aggregated by its filtered vote (HEADLINE_AGGREGATION:
majority among the solutions in which it finds no first error), the choice made before any of this
bench's Best-of-N figures was seen.

Usage: .venv/bin/python bench/prm_quality.py [--pool-problems 1000 --samples 2 --rollouts 4 --steps 400
       --pb-rows 400 --bon-problems 200 --bon-samples 16 --policy vllm:embedded]
On 2 CPU cores scoring dominates: --bon-samples 64 (N up to 64) quadruples the Best-of-N part.
Best-of-N scores the headline PRM, the ORM and the implicit PRM; first errors score every model.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRMFORGE = str(Path(sys.executable).parent / "prmforge")
POOL_SEED, PB_SEED, PB_CALIBRATION_SEED, BON_SEED = 100, 9001, 9002, 9003
SOURCES = {  # model name -> (dataset labeler, label kind, model kind)
    "prm_mc_hard": ("mc", "hard", "prm"),
    "prm_mc_soft": ("mc", "soft", "prm"),
    "prm_search": ("search", "hard", "prm"),
    "prm_consensus": ("consensus:mc_and_verifiers", "hard", "prm"),
    "prm_arith": ("verifier:arith", "hard", "prm"),
    "orm": ("mc", "hard", "orm"),
    "implicit": ("mc", "hard", "implicit"),
}
PRMS = [name for name, (_, _, kind) in SOURCES.items() if kind == "prm"]
# The headline's Best-of-N aggregation, fixed before this bench's Best-of-N figures are read: the
# vote among the solutions in which the PRM finds no first error (its threshold from the calibration
# rows). Chosen on bench/bon_headroom.py's problems (another seed), where the same filter over the
# arith verifier's verdicts gained +0.033 over majority at 5-8 steps, and scoring by the minimum +0.014.
HEADLINE_AGGREGATION = "filtered_vote"


def run(work: Path, *arguments: str) -> str:
    """One `prmforge` command against the bench warehouse; its stdout (it must succeed)."""
    env = {**os.environ, "PRMFORGE_DATA_DIR": str(work / "data"), "PREFECT_HOME": str(work / "prefect")}
    began = time.perf_counter()
    result = subprocess.run([PRMFORGE, *arguments], env=env, capture_output=True, text=True, cwd=work)
    if result.returncode != 0:
        sys.exit(f"prmforge {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    print(f"  prmforge {' '.join(arguments)[:100]} ({time.perf_counter() - began:.0f} s)", flush=True)
    return result.stdout


def stage(work: Path, name: str, make):
    """The stage's JSON result from an earlier run, or made now and kept."""
    path = work / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    print(f"[{name}]", flush=True)
    value = make()
    path.write_text(json.dumps(value, indent=1))
    return value


def make_pool(work: Path, args) -> dict:
    config = {
        "problems": args.pool_problems, "samples": args.samples, "rollouts": args.rollouts, "seed": POOL_SEED,
        "min_steps": 2, "max_steps": 8, "policy": args.policy, "test_fraction": 0.0,
    }
    mc = dict(config, labeler="mc", verifiers=["arith"], consensus="mc_and_verifiers")
    (work / "pool_mc.json").write_text(json.dumps(mc))
    (work / "pool_search.json").write_text(json.dumps(dict(config, labeler="search")))
    run(work, "generate", "--config", str(work / "pool_mc.json"), "--no-dataset")
    run(work, "generate", "--config", str(work / "pool_search.json"), "--no-dataset")
    versions = {}
    for labeler in dict.fromkeys(labeler for labeler, _, _ in SOURCES.values()):
        out = run(work, "dataset", "build", "--labeler", labeler, "--test-fraction", "0.0")
        versions[labeler] = int(out.split("dataset version ")[1].split(":")[0])
    return versions


def train_models(work: Path, args, versions: dict) -> dict:
    paths = {}
    for name, (labeler, labels, kind) in SOURCES.items():
        out = run(work, "train", "--dataset", str(versions[labeler]), "--labels", labels, "--kind", kind,
                  "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--json")
        paths[name] = json.loads(out)["path"]
    return paths


def held_out_problems(args) -> dict:
    """The Best-of-N problems: none of them is in the pool (checked by id)."""
    from tasks.synthetic import generate_problems

    pool = {problem.problem_id for problem in generate_problems(args.pool_problems, POOL_SEED, 2, 8)}
    problems = [p for p in generate_problems(args.bon_problems + 50, BON_SEED, 5, 8) if p.problem_id not in pool]
    problems = problems[: args.bon_problems]
    return {"measured": [p.problem_id for p in problems], "problems": [[p.problem_id, p.question, p.answer] for p in problems]}


def sample_best_of_n(args, problems: dict) -> list:
    from schemas.records import Problem, SamplingParams
    from tasks.policies.registry import load_policy
    from tasks.splitting import DEFAULT_BOUNDARY
    from tasks.tree import sample_solutions

    policy = load_policy(args.policy)
    chosen = [Problem(pid, question, answer, "synthetic") for pid, question, answer in problems["problems"]]
    solutions, _ = sample_solutions(policy, chosen, args.bon_samples, SamplingParams(seed=BON_SEED, max_new_tokens=200),
                                    DEFAULT_BOUNDARY)
    if hasattr(policy, "close"):
        policy.close()
    return [[s.problem_id, list(s.steps), s.final_answer, s.is_correct] for s in solutions]


def score_everything(models: dict, solutions: list[tuple[str, tuple[str, ...]]]) -> dict:
    """Per model: the per-step scores of every solution (None where it cannot read one)."""
    from tasks.prm.model import SolutionTooLong
    from tasks.prm.score import PRMScorer

    scored = {}
    for name, path in models.items():
        began = time.perf_counter()
        scorer = PRMScorer(path, batch_size=32)
        values = []
        for start in range(0, len(solutions), 256):
            chunk = solutions[start : start + 256]
            try:
                values += [s.per_step for s in scorer.score_many(chunk)]
            except (SolutionTooLong, ValueError):
                for solution in chunk:
                    try:
                        values.append(scorer.score(*solution).per_step)
                    except (SolutionTooLong, ValueError):
                        values.append(None)
        scored[name] = values
        print(f"  scored {len(solutions)} solutions with {name} ({time.perf_counter() - began:.0f} s)", flush=True)
    return scored


def adapted_policy(work: Path, args) -> str:
    """A lever: the embedded policy adapted as `prmforge policy adapt` adapts a base (tasks/prm/adapt.py:
    next-token loss on the solution only, 300 steps of 16) to the reference solutions of the pool's
    problems, 2-8 steps long. The policy itself was trained on at most 6 steps, and its position
    embeddings past ~192 tokens are untrained."""
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
    from tasks.prm.adapt import AdaptSettings, adapt_base
    from tasks.synthetic import generate_problems

    output = work / "adapted_policy"
    metrics = adapt_base(EMBEDDED_POLICY_DIR, generate_problems(args.pool_problems, POOL_SEED, 2, 8), output,
                         AdaptSettings(steps=300, batch_size=16))
    print(f"  adapted the policy to {metrics.problems} reference solutions: loss {metrics.first_loss:.3f} -> "
          f"{metrics.final_loss:.3f}")
    return str(output)


def policy_surprise(solutions: list[tuple[str, tuple[str, ...]]], base: str | None = None) -> list[list[float] | None]:
    """A lever with no training on labels: each step's score is a language model's lowest token
    probability on that step's tokens (the embedded policy's by default: the surprise the PRM's
    network starts from)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
    from tasks.prm.implicit import encode_text

    tokenizer = AutoTokenizer.from_pretrained(base or EMBEDDED_POLICY_DIR)
    model = AutoModelForCausalLM.from_pretrained(base or EMBEDDED_POLICY_DIR).eval()
    scores: list[list[float] | None] = []
    for problem, steps in solutions:
        text = encode_text(tokenizer, problem, steps, model.config.n_positions)
        if text is None:
            scores.append(None)
            continue
        ids = torch.tensor([text.input_ids])
        with torch.inference_mode():
            logprobs = model(input_ids=ids).logits[0, :-1].log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
        start, per_step = text.prompt_tokens, []
        for end in text.step_ends:
            per_step.append(float(logprobs[start - 1 : end].min().exp()))  # tokens start..end, predicted from the one before
            start = end + 1
        scores.append(per_step)
    return scores


@dataclass(frozen=True)
class FirstErrorRow:
    model: str
    f1: object  # Interval
    erroneous: float
    correct: float
    threshold: float
    calibration_f1: float
    by_steps: dict  # solution length -> share of rows whose first error (or none) is found exactly
    hits: tuple = ()  # per measured row: (its label, whether the model found it), for paired comparisons


def first_errors(models: dict, work: Path, args) -> dict[str, FirstErrorRow]:
    from tasks.ground_truth import synthetic_processbench
    from tasks.prm.evaluate import choose_threshold, first_error_result, predicted_first_error
    from tasks.prm.stats import bootstrap

    calibration = synthetic_processbench(args.pb_rows // 2, PB_CALIBRATION_SEED)
    measured = synthetic_processbench(args.pb_rows, PB_SEED)
    rows = calibration + measured
    scores = stage(work, "pb_scores", lambda: score_everything(models, [(r.problem, r.steps) for r in rows]))
    scores["policy_surprise"] = stage(work, "pb_surprise", lambda: policy_surprise([(r.problem, r.steps) for r in rows]))
    adapted = stage(work, "adapted_policy", lambda: adapted_policy(work, args))
    scores["adapted_surprise"] = stage(
        work, "pb_adapted_surprise", lambda: policy_surprise([(r.problem, r.steps) for r in rows], adapted))
    results = {}
    for name, values in scores.items():
        cal, test = values[: len(calibration)], values[len(calibration) :]
        threshold = choose_threshold([r.label for r in calibration], cal)
        result = first_error_result([r.label for r in measured], test, threshold)
        hits = [(row.label, predicted_first_error(value, threshold) == row.label) for row, value in zip(measured, test)]

        fitted = first_error_result([r.label for r in calibration], cal, threshold)
        by_steps: dict[int, list[bool]] = {}
        for row, (_, hit) in zip(measured, hits, strict=True):
            by_steps.setdefault(len(row.steps), []).append(hit)
        results[name] = FirstErrorRow(name, bootstrap(hits, f1), result.accuracy_erroneous, result.accuracy_correct,
                                      threshold, fitted.f1,
                                      {n: sum(found) / len(found) for n, found in sorted(by_steps.items())}, tuple(hits))
    return results


def f1(sample) -> float | None:
    """ProcessBench F1 of (label, found) pairs; None when either kind of row is missing."""
    from tasks.processbench import processbench_f1

    wrong = [hit for label, hit in sample if label != -1]
    right = [hit for label, hit in sample if label == -1]
    return processbench_f1(sum(wrong) / len(wrong), sum(right) / len(right)) if wrong and right else None


def paired_f1_difference(first: FirstErrorRow, second: FirstErrorRow):
    """F1(first) - F1(second) on the same rows, with the interval of a paired bootstrap over rows."""
    from tasks.prm.stats import bootstrap

    pairs = list(zip(first.hits, second.hits, strict=True))

    def difference(sample):
        a, b = f1([x for x, _ in sample]), f1([y for _, y in sample])
        return None if a is None or b is None else a - b

    return bootstrap(pairs, difference)


@functools.cache
def _arith():
    from tasks.verification import load_verifiers

    return load_verifiers(["arith"])


def arith_verdicts(question: str, steps) -> list[str]:
    """The arith verifier's verdict on each step (one verifier, loaded once per process)."""
    from tasks.verification import verify_solution

    return [step[0].verdict for step in verify_solution(question, list(steps), _arith())]


def reference_scores(question: str, steps) -> dict[str, float]:
    """Two scorers that need no model, beside the PRMs at Best-of-N: `exact_steps`, a solution's
    exact step truths (tasks/ground_truth.py: 1 when every step is right), the ceiling of any PRM
    aggregated by its minimum; and `arith_min`, the arith verifier's verdicts read directly (valid 1,
    unknown 0.5, invalid 0; the minimum over steps), the label source of the `prm_arith` model; and
    `arith_clear`, 1 when that verifier calls no step invalid (what `arith_vote` filters on)."""
    from tasks.ground_truth import step_truths

    truths = step_truths(question, steps) or [False]
    verdicts = arith_verdicts(question, steps)
    values = {"valid": 1.0, "unknown": 0.5}
    arith_min = min((values.get(v, 0.0) for v in verdicts), default=0.0)
    return {"exact_steps": float(all(truths)), "arith_min": arith_min, "arith_clear": float(arith_min > 0)}


def best_of_n_curves(models: dict, work: Path, args, problem_ids: list[str], samples: list, headline_model: str,
                     threshold: float) -> dict:
    """Best-of-N of the headline PRM by every aggregation, its two votes (weighted by its minimum, and
    filtered by its first-error `threshold`: tasks/prm/evaluate.py's prm_vote and prm_filtered_vote),
    the ORM, the implicit PRM, the adapted policy's surprise and the model-free references."""
    from tasks.prm.evaluate import Candidate, best_of_n, best_of_n_sizes, clear_of_errors
    from tasks.prm.score import AGGREGATIONS, aggregate

    wanted = set(problem_ids)
    chosen = [s for s in samples if s[0] in wanted]
    questions = {pid: question for pid, question, _ in stage(work, "bon_problems", lambda: held_out_problems(args))["problems"]}
    solutions = [(questions[pid], tuple(steps)) for pid, steps, _, _ in chosen]
    # Scoring is the costly part on CPU: the headline PRM and the two baselines that need a model.
    compared = {name: models[name] for name in (headline_model, "orm", "implicit")}
    scores = stage(work, f"bon_scores_{headline_model}", lambda: score_everything(compared, solutions))
    adapted = stage(work, "adapted_policy", lambda: adapted_policy(work, args))
    scores["adapted_surprise"] = stage(work, "bon_adapted_surprise", lambda: policy_surprise(solutions, adapted))
    groups: dict[str, list] = {}
    for index, (pid, steps, answer, correct) in enumerate(chosen):
        values = {}
        for name, per_solution in scores.items():
            per_step = per_solution[index]
            agg = aggregate(per_step) if per_step else None
            for how in AGGREGATIONS:
                values[f"{name}_{how}"] = agg.aggregated(how) if agg else float("-inf")
        values.update(reference_scores(questions[pid], steps))
        values[f"{headline_model}_clear"] = clear_of_errors(scores[headline_model][index], threshold)
        groups.setdefault(pid, []).append(Candidate(answer, bool(correct), values))
    selectors = [f"{headline_model}_{how}" for how in AGGREGATIONS] + [
        "orm_last", "implicit_min", "adapted_surprise_min", "exact_steps", "arith_min"]
    votes = {f"{headline_model}_vote": f"{headline_model}_min",
             f"{headline_model}_filtered_vote": f"{headline_model}_clear", "arith_vote": "arith_clear"}
    return best_of_n(list(groups.values()), selectors, best_of_n_sizes(args.bon_samples), 256, 0, weighted_votes=votes)


def point(curves: dict, method: str, n: int):
    return next(p for p in curves[method] if p.n == n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-problems", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pb-rows", type=int, default=400)
    parser.add_argument("--bon-problems", type=int, default=200)
    parser.add_argument("--bon-samples", type=int, default=16)
    parser.add_argument("--policy", default="vllm:embedded")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".prm_quality")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    from tasks.prm.score import AGGREGATIONS
    from tasks.prm.stats import paired_difference

    versions = stage(work, "datasets", lambda: make_pool(work, args))
    models = stage(work, "models", lambda: train_models(work, args, versions))
    problems = stage(work, "bon_problems", lambda: held_out_problems(args))
    samples = stage(work, "bon_samples", lambda: sample_best_of_n(args, problems))

    print("\nfirst-error identification, synthetic ProcessBench "
          f"({args.pb_rows} measured rows, half erroneous; threshold from {args.pb_rows // 2} other rows)")
    errors = first_errors(models, work, args)
    lengths = sorted(next(iter(errors.values())).by_steps)
    print(f"{'model':<16} {'F1 [95% CI]':<26} {'acc erroneous':>14} {'acc correct':>12} {'threshold':>10} "
          f"{'calibration F1':>15}  exact by steps: " + " ".join(f"{n:>5}" for n in lengths))
    for row in errors.values():
        print(f"{row.model:<16} {row.f1.shown():<26} {row.erroneous:>14.3f} {row.correct:>12.3f} {row.threshold:>10.4f} "
              f"{row.calibration_f1:>15.3f}                  " + " ".join(f"{row.by_steps[n]:>5.2f}" for n in lengths))

    headline_model = max(PRMS, key=lambda name: errors[name].calibration_f1)
    headline = f"{headline_model}_{HEADLINE_AGGREGATION}"
    measured = best_of_n_curves(models, work, args, problems["measured"], samples, headline_model,
                                errors[headline_model].threshold)
    sizes = sorted({p.n for p in measured["oracle"]})

    print(f"\nBest-of-N on {len(problems['measured'])} held-out problems (5-8 steps), {args.bon_samples} solutions "
          "each from the embedded policy; accuracy [95% CI over problems]")
    every_aggregation = [f"{headline_model}_{how}" for how in (*AGGREGATIONS, "vote", "filtered_vote")]
    shown = ["oracle", "exact_steps", "majority", "random", "arith_min", "arith_vote", "orm_last", "implicit_min",
             "adapted_surprise_min", *every_aggregation]
    print(f"{'method':<22} " + " ".join(f"{'N=' + str(n):>21}" for n in sizes))
    for method in shown:
        print(f"{method:<22} " + " ".join(f"{point(measured, method, n).accuracy:.3f} [{point(measured, method, n).low:.2f},{point(measured, method, n).high:.2f}]".rjust(21) for n in sizes))
    n = 16 if 16 in sizes else sizes[-1]  # 16 unless fewer solutions were sampled
    n16 = point(measured, "oracle", n)
    headroom = paired_difference(n16.values, point(measured, "majority", n).values)
    ceiling = paired_difference(point(measured, "exact_steps", n).values, point(measured, "majority", n).values)
    print(f"\noracle - majority at N={n}: {headroom.shown()}")
    print(f"exact_steps - majority at N={n} (paired; what a perfect PRM gains): {ceiling.shown()}")
    differences = {}
    for baseline in ("majority", "orm_last", "implicit_min", "random"):
        differences[baseline] = paired_difference(point(measured, headline, n).values, point(measured, baseline, n).values)
        print(f"{headline} - {baseline} at N={n} (paired): {differences[baseline].shown()}")
    best_f1 = errors[headline_model].f1
    mc_f1, consensus_f1 = errors["prm_mc_hard"].f1, errors["prm_consensus"].f1
    print(f"consensus vs mc (hard) F1: {consensus_f1.shown()} vs {mc_f1.shown()}")
    print(f"headline model: {headline_model} (best F1 on the calibration rows), aggregated by {HEADLINE_AGGREGATION}")
    print(f"prm_first_error_f1: {best_f1.estimate:.3f}")
    print(f"prm_bon16_minus_majority: {differences['majority'].estimate:.3f}")
    print(f"prm_bon16_minus_majority_ci_low: {differences['majority'].low:.3f}")


if __name__ == "__main__":
    main()
