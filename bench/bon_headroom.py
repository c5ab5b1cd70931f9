"""How much can any PRM gain over majority vote at Best-of-N on the embedded policy, by problem length?

prm_quality.py's Best-of-N target asks a PRM to beat majority vote by 3 points. This bench measures
the room for that before any PRM is trained: fresh solutions from the embedded policy on held-out
synthetic problems of each length, and per length

  oracle        pass@N: some solution is right
  majority      majority vote over final answers
  exact_steps   the ceiling of a step scorer: solutions ranked by their exact step truths
                (tasks/ground_truth.py; the minimum over steps, so a solution with every step right
                ranks first), what a perfect PRM aggregated by its minimum would pick
  exact_vote    majority vote among the solutions whose steps are all right (a perfect prm_vote)
  arith_min     the arith verifier as a step scorer (valid 1, unknown 0.5, invalid 0): the label
                source the best PRM was trained on, read directly
  arith_vote    majority vote among the solutions the arith verifier finds no invalid step in
                (the first solution when it finds one in every solution): a verifier-filtered vote
  random        one solution at random

with 95% bootstrap intervals over problems, and paired intervals for each ceiling minus majority.
The problems are drawn like prm_quality.py's (held out from its pool), one length at a time.

Usage: .venv/bin/python bench/bon_headroom.py [--problems 200 --samples 16 --lengths 5,6,7,8 --policy vllm:embedded]
The last line is `exact_steps_bon16_minus_majority: X`, the ceiling on the mix of lengths (the
default mix is the one prm_quality.py measures).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from dataclasses import asdict
from pathlib import Path

BON_SEED = 9003
VOTES = {"exact_vote": "exact_steps", "arith_vote": "arith_clear"}


def sample(policy_spec: str, length: int, problems: int, samples: int, seed: int):
    """The problems of one length and their solutions, kept in bench/.bon_headroom for reruns."""
    from schemas.records import Problem, Solution

    cache = Path(__file__).parent / ".bon_headroom" / f"{policy_spec.replace(':', '_').replace('/', '_')}_{length}_{problems}x{samples}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        return [Problem(**p) for p in data["problems"]], [Solution(**s) for s in data["solutions"]]
    chosen, solutions = _sample(policy_spec, length, problems, samples, seed)
    cache.parent.mkdir(exist_ok=True)
    cache.write_text(json.dumps({"problems": [asdict(p) for p in chosen], "solutions": [asdict(s) for s in solutions]}))
    return chosen, solutions


def _sample(policy_spec: str, length: int, problems: int, samples: int, seed: int):
    from schemas.records import SamplingParams
    from tasks.policies.registry import load_policy
    from tasks.splitting import DEFAULT_BOUNDARY
    from tasks.synthetic import generate_problems
    from tasks.tree import sample_solutions

    chosen = generate_problems(problems, seed + length, length, length)
    solutions, _ = sample_solutions(load_policy(policy_spec), chosen, samples,
                                    SamplingParams(seed=seed, max_new_tokens=200), DEFAULT_BOUNDARY)
    return chosen, solutions


def surprise_scores(problems, solutions, scorers: list[str]) -> list[dict[str, float]]:
    """Per solution, each language-model scorer's minimum over steps of prm_quality.py's
    policy_surprise (a step's lowest token probability): `surprise` reads the embedded policy,
    `adapted` the policy fine-tuned on the reference solutions of prm_quality.py's pool."""
    import prm_quality

    questions = {p.problem_id: p.question for p in problems}
    texts = [(questions[s.problem_id], tuple(s.steps)) for s in solutions]
    bases = {"surprise": None}
    if "adapted" in scorers:
        work = Path(__file__).parent / ".bon_headroom"
        bases["adapted"] = prm_quality.stage(work, "adapted_policy",
                                             lambda: prm_quality.adapted_policy(work, argparse.Namespace(pool_problems=1000)))
    columns = {name: prm_quality.policy_surprise(texts, bases[name]) for name in scorers}
    return [{name: min(per_step[i]) if per_step[i] else 0.0 for name, per_step in columns.items()}
            for i in range(len(solutions))]


def candidates(problems, solutions, extra: list[dict[str, float]] | None = None) -> list[list]:
    """Best-of-N candidates per problem, in problem order, with the model-free scorers."""
    from prm_quality import reference_scores
    from tasks.prm.evaluate import Candidate

    questions = {p.problem_id: p.question for p in problems}
    groups = collections.defaultdict(list)
    for index, solution in enumerate(solutions):
        scores = {**reference_scores(questions[solution.problem_id], solution.steps), **(extra[index] if extra else {})}
        groups[solution.problem_id].append(Candidate(solution.final_answer, bool(solution.is_correct), scores))
    return [groups[p.problem_id] for p in problems]


def table(curves: dict, n: int, title: str, scorers: list[str]) -> str:
    from tasks.prm.stats import paired_difference

    def at(method):
        return next(p for p in curves[method] if p.n == n)

    lines = [title]
    for method in ("oracle", "majority", "exact_steps", "exact_vote", "arith_min", "arith_vote", *scorers, "random"):
        p = at(method)
        lines.append(f"  {method:<12} {p.accuracy:.3f} [{p.low:.3f}, {p.high:.3f}]")
    for method in ("oracle", "exact_steps", "exact_vote", "arith_min", "arith_vote", *scorers):
        d = paired_difference(at(method).values, at("majority").values)
        lines.append(f"  {method} - majority: {d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]")
    return "\n".join(lines)


def main() -> None:
    from tasks.prm.evaluate import best_of_n

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=200, help="problems per length")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--lengths", default="5,6,7,8")
    parser.add_argument("--policy", default="vllm:embedded")
    parser.add_argument("--scorers", default="", help="language-model scorers to add: surprise, adapted")
    args = parser.parse_args()
    scorers = [name for name in args.scorers.split(",") if name]
    lengths = [int(x) for x in args.lengths.split(",")]
    every: list[list] = []
    began = time.perf_counter()
    for length in lengths:
        problems, solutions = sample(args.policy, length, args.problems, args.samples, BON_SEED)
        groups = candidates(problems, solutions, surprise_scores(problems, solutions, scorers) if scorers else None)
        every += groups
        curves = best_of_n(groups, ["exact_steps", "arith_min", *scorers], [args.samples], 256, 0,
                           weighted_votes=VOTES)
        print(table(curves, args.samples, f"{length} steps: Best-of-{args.samples} on {len(groups)} problems", scorers),
              flush=True)
    curves = best_of_n(every, ["exact_steps", "arith_min", *scorers], [args.samples], 256, 0,
                       weighted_votes=VOTES)
    print(table(curves, args.samples, f"all lengths ({args.lengths}): {len(every)} problems", scorers))
    print(f"({time.perf_counter() - began:.0f} s)")
    point = {m: next(p for p in curves[m] if p.n == args.samples) for m in ("exact_steps", "majority")}
    print(f"exact_steps_bon{args.samples}_minus_majority: "
          f"{point['exact_steps'].accuracy - point['majority'].accuracy:.3f}")


if __name__ == "__main__":
    main()
