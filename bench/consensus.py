"""Precision and recall of negative step labels, per source and after consensus, on known ground truth.

Instrument: the simulated policy (tasks/policies/simulated.py), whose every step's truth is known.
Solutions are sampled and split as the generate flow does, then labelled by
- mc: Math-Shepherd Monte Carlo (k rollouts per step, under the same simulated policy);
- judge: the LLM judge, only when the embedded model is present (tasks/policies/embedded/); the
  simulated policy cannot judge, and no judge is faked, so without the model the source is skipped;
- arith, z3, code: the step verifiers, each node of the tree verified once.
Consensus (tasks/consensus.py) decides every solution under each rule.

What is counted, per solution and step (a step shared by several solutions counts once per
solution, as in the exported dataset, one row per solution):
- a negative label: mc's raw hard label False; for a verifier, its first invalid step and every
  step after it (the first-error labels a verifier-only pipeline would train on), on solutions
  where it is available; for consensus, the agreed first wrong step and after, on kept solutions.
- truly bad: the step itself is incorrect (`step_is_correct`): a step that computes honestly from
  a wrong carried value is incorrect, a step that silently recovers the true value is correct.
  Precision, recall and positive precision use it.
- "prefix truth" (ProcessBench's semantics, from `first_error_index`): every step at or after the
  first incorrect one is bad. Given as a second precision. Under it arith and z3 cannot be wrong
  on this instrument: every simulated mistake is an arithmetic slip (which they catch exactly)
  or arithmetically true (a wrong operand or a miscopied value, which they pass).
- recall is over every incorrect step of every solution; "recall (covered)" only over the
  solutions the source labels (mc all; a verifier where it is available; consensus the kept).
- first error exact: the source's first negative label is the true first incorrect step.
- consensus rows count the labels consensus emits: the kept solutions' steps up to and including
  the agreed first wrong step. No source vouches for the steps after it, so they get no label.

Usage: .venv/bin/python bench/consensus.py [--policy simulated:error_rate=0.15,recovery_rate=0.1]
       [--problems 400 --samples 4 --rollouts 4 --seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass

from schemas.records import SamplingParams, StepLabel
from tasks.consensus import RULES, pairwise_agreement, run_consensus
from tasks.labelers.base import LabelRequest
from tasks.labelers.mc import MonteCarloLabeler
from tasks.policies.registry import load_policy
from tasks.policies.simulated import first_error_index, step_is_correct
from tasks.splitting import DEFAULT_BOUNDARY
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, sample_solutions
from tasks.verification import load_verifiers, solution_paths, verify_tree

VERIFIERS = ("arith", "z3", "code")


@dataclass
class Counts:
    solutions: int = 0
    negatives: int = 0
    true_negatives: int = 0  # labelled bad and the step itself is incorrect (step truth)
    true_negatives_prefix: int = 0  # labelled bad and at or after the first incorrect step
    wrong_covered: int = 0  # incorrect steps in the solutions this source labels
    positives: int = 0
    true_positives: int = 0  # labelled good and the step is correct
    first_error_exact: int = 0  # solutions whose first negative label is the true first error

    def add(self, negative: list[bool], wrong: list[bool]) -> None:
        first_wrong = _first(wrong)
        prefix_bad = [first_wrong != -1 and index >= first_wrong for index in range(len(wrong))]
        self.solutions += 1
        self.wrong_covered += sum(wrong)
        self.first_error_exact += _first(negative) == _first(wrong)
        for is_negative, is_wrong, bad in zip(negative, wrong, prefix_bad, strict=True):
            self.negatives += is_negative
            self.true_negatives += is_negative and is_wrong
            self.true_negatives_prefix += is_negative and bad
            self.positives += not is_negative
            self.true_positives += not is_negative and not is_wrong


def _first(flags: list[bool]) -> int:
    return flags.index(True) if True in flags else -1


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else "-"


def first_error_negatives(first_error: int, length: int) -> list[bool]:
    return [first_error != -1 and index >= first_error for index in range(length)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="simulated:error_rate=0.15,recovery_rate=0.1")
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-steps", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=6)
    args = parser.parse_args()
    began = time.perf_counter()

    policy = load_policy(args.policy)
    problems = generate_problems(args.problems, args.seed, args.min_steps, args.max_steps)
    questions = {problem.problem_id: problem.question for problem in problems}
    solutions, _ = sample_solutions(policy, problems, args.samples, SamplingParams(seed=args.seed * 2), DEFAULT_BOUNDARY)
    tree = build_tree(solutions)
    nodes = {node.node_id: node for node in tree}
    paths = solution_paths(nodes)
    request = LabelRequest(
        nodes=nodes,
        problems={problem.problem_id: problem for problem in problems},
        to_label=tree,
        rollouts_per_step=args.rollouts,
        params=SamplingParams(seed=args.seed * 2 + 1),
    )
    labels_by_source: dict[str, dict[str, StepLabel]] = {}
    mc = MonteCarloLabeler().label(policy, request)
    labels_by_source["mc"] = {label.node_id: label for label in mc.labels}
    judge_note = _judge(request, labels_by_source)

    verify_began = time.perf_counter()
    verdicts = verify_tree(nodes, questions, load_verifiers(VERIFIERS))
    verify_seconds = time.perf_counter() - verify_began
    outcomes = {rule: run_consensus(paths, labels_by_source, verdicts, VERIFIERS, rule) for rule in RULES}

    counts: dict[str, Counts] = defaultdict(Counts)
    total_wrong = truly_wrong = 0
    views = outcomes["default"].views
    decisions = {rule: {d.solution_id: d for d in outcome.decisions} for rule, outcome in outcomes.items()}
    for solution_id, path in paths.items():
        question, steps = questions[path[0].problem_id], [node.step_text for node in path]
        wrong = [not step_is_correct(question, steps[:index], step) for index, step in enumerate(steps)]
        assert _first(wrong) == first_error_index(question, steps)
        total_wrong += sum(wrong)
        truly_wrong += any(wrong)
        for source, labels in labels_by_source.items():
            if all(node.node_id in labels for node in path):
                counts[source].add([not labels[node.node_id].hard for node in path], wrong)
        for view in views[solution_id]:
            if view.kind == "verifier" and view.available:
                counts[view.source].add(first_error_negatives(view.first_error, len(steps)), wrong)
        for rule, by_solution in decisions.items():
            decision = by_solution[solution_id]
            if decision.kept:  # consensus labels stop at the agreed first wrong step
                through = len(steps) if decision.first_error == -1 else decision.first_error + 1
                counts[f"consensus ({rule})"].add(
                    first_error_negatives(decision.first_error, len(steps))[:through], wrong[:through]
                )

    print(f"workload: {len(problems)} problems x {args.samples} samples = {len(paths)} solutions, "
          f"{len(tree)} distinct steps, {sum(len(p) for p in paths.values())} solution steps; policy {policy.name}")
    print(f"mc: k={args.rollouts} rollouts per step; {judge_note}")
    print(f"ground truth: {truly_wrong} of {len(paths)} solutions have a wrong step; {total_wrong} incorrect solution steps")
    print()
    print("| source | solutions labelled | negative labels | neg. precision | neg. precision (prefix truth) "
          "| neg. recall | neg. recall (covered) | pos. precision | first error exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    order = [*labels_by_source, *VERIFIERS, *(f"consensus ({rule})" for rule in RULES)]
    for source in order:
        c = counts[source]
        print(f"| {source} | {c.solutions} ({_ratio(c.solutions, len(paths))}) | {c.negatives} | "
              f"{_ratio(c.true_negatives, c.negatives)} | {_ratio(c.true_negatives_prefix, c.negatives)} | "
              f"{_ratio(c.true_negatives, total_wrong)} | {_ratio(c.true_negatives, c.wrong_covered)} | "
              f"{_ratio(c.true_positives, c.positives)} | {_ratio(c.first_error_exact, c.solutions)} |")
    print()
    print("| rule | kept | kept share | dropped with disagreeing sources named |")
    print("|---|---|---|---|")
    for rule, outcome in outcomes.items():
        kept = sum(d.kept for d in outcome.decisions)
        named = sum(bool(d.sources_disagreeing) for d in outcome.decisions if not d.kept)
        print(f"| {rule} | {kept} of {len(paths)} | {_ratio(kept, len(paths))} | {named} of {len(paths) - kept} |")
    print()
    print("| source pair | both available | agreement | default retention if only this pair voted |")
    print("|---|---|---|---|")
    for pair in pairwise_agreement(views):
        rate = "-" if pair.agreement_rate is None else f"{pair.agreement_rate:.3f}"
        print(f"| {pair.first} + {pair.second} | {pair.both_available} | {rate} | {pair.retention:.3f} |")
    print()
    print("| verifier | ms per step (mean) | steps not unknown |")
    print("|---|---|---|")
    for name in VERIFIERS:
        mine = [v for row in verdicts.values() for v in row if v.verifier == name]
        known = sum(v.verdict != "unknown" for v in mine)
        print(f"| {name} | {sum(v.ms for v in mine) / len(mine):.2f} | {_ratio(known, len(mine))} |")
    print(f"verification wall time: {verify_seconds:.1f} s for {len(verdicts)} distinct steps; total {time.perf_counter() - began:.1f} s")

    default = counts["consensus (default)"]
    precision = {s: c.true_negatives / c.negatives for s, c in counts.items() if c.negatives}
    singles = {s: p for s, p in precision.items() if not s.startswith("consensus")}
    prefix_precision = default.true_negatives_prefix / default.negatives if default.negatives else 0.0
    consensus_precision = precision.get("consensus (default)", 0.0)
    kept_share = default.solutions / len(paths)
    above = all(consensus_precision > p for p in singles.values())
    print(f"target: consensus (default) negative precision {consensus_precision:.3f} vs single sources "
          + ", ".join(f"{s} {p:.3f}" for s, p in singles.items())
          + f" ({'above all' if above else 'NOT above all'}; prefix truth {prefix_precision:.3f}); kept share {kept_share:.3f} "
          f"({'meets' if kept_share >= 0.4 else 'BELOW'} 0.40)")
    print(f"consensus_negative_precision: {consensus_precision:.3f}")


def _judge(request: LabelRequest, labels_by_source: dict[str, dict[str, StepLabel]]) -> str:
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR

    if not (EMBEDDED_POLICY_DIR / "config.json").exists():
        return f"judge: skipped, no embedded model at {EMBEDDED_POLICY_DIR} (the simulated policy cannot judge)"
    from tasks.labelers.judge import JudgeLabeler

    result = JudgeLabeler().label(load_policy("embedded"), request)
    labels_by_source["judge"] = {label.node_id: label for label in result.labels}
    return f"judge: embedded model, {len(result.unknown)} of {len(result.judgements)} answers unreadable"


if __name__ == "__main__":
    main()
