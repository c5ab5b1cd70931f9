"""Precision and recall of negative step labels, per source and after consensus, on known ground truth.

Instrument: the simulated policy (tasks/policies/simulated.py), whose every step's truth is known.
Solutions are sampled and split as the generate flow does, then labelled by
- mc: Math-Shepherd Monte Carlo (k rollouts per step, under the same simulated policy);
- judge: the LLM judge on `--judge POLICY` (default: the embedded model). The simulated policy
  cannot judge and no judge is faked: when the backend cannot do the task (it rejects the prompt,
  e.g. a context shorter than the prompt: JudgeUnavailable) or reads as no answer at all (every
  answer unreadable), the source is skipped with a printed note. `--judge none` skips it;
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
- two ways of counting, for every source alike: "all steps" counts a source's negatives on every
  step of the solutions it labels (for consensus: first-error labels over the whole kept
  solution); "through first negative" stops each solution at the source's own first negative
  label (for consensus: the agreed first wrong step, exactly the labels consensus emits; no source
  vouches for the steps after it). Consensus is compared with the single sources like with like:
  the target line uses "through first negative" for every source, and gives "all steps" beside.

Usage: .venv/bin/python bench/consensus.py [--policy simulated:error_rate=0.15,recovery_rate=0.1]
       [--problems 400 --samples 4 --rollouts 4 --seed 0 --judge embedded|none|SPEC]
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
MODES = ("all steps", "through first negative")
KEPT_SHARE_TARGET = 0.4


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


def through_first_negative(negative: list[bool]) -> int:
    """How many steps a source vouches for: up to and including its first negative, else all.

    >>> through_first_negative([False, True, True]), through_first_negative([False, False])
    (2, 2)
    """
    return negative.index(True) + 1 if True in negative else len(negative)


def count_both_ways(counts: dict, source: str, negative: list[bool], wrong: list[bool]) -> None:
    counts[(source, MODES[0])].add(negative, wrong)
    through = through_first_negative(negative)
    counts[(source, MODES[1])].add(negative[:through], wrong[:through])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="simulated:error_rate=0.15,recovery_rate=0.1")
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-steps", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=6)
    parser.add_argument("--judge", default="embedded", help="policy spec of the judge, or 'none'")
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
    judge_note = _judge(args.judge, request, labels_by_source)

    verify_began = time.perf_counter()
    verdicts = verify_tree(nodes, questions, load_verifiers(VERIFIERS))
    verify_seconds = time.perf_counter() - verify_began
    outcomes = {rule: run_consensus(paths, labels_by_source, verdicts, VERIFIERS, rule) for rule in RULES}

    counts: dict[tuple[str, str], Counts] = defaultdict(Counts)
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
                count_both_ways(counts, source, [not labels[node.node_id].hard for node in path], wrong)
        for view in views[solution_id]:
            if view.kind == "verifier" and view.available:
                count_both_ways(counts, view.source, first_error_negatives(view.first_error, len(steps)), wrong)
        for rule, by_solution in decisions.items():
            decision = by_solution[solution_id]
            if decision.kept:  # "through first negative" is what consensus emits: through the agreed step
                count_both_ways(counts, f"consensus ({rule})", first_error_negatives(decision.first_error, len(steps)), wrong)

    print(f"workload: {len(problems)} problems x {args.samples} samples = {len(paths)} solutions, "
          f"{len(tree)} distinct steps, {sum(len(p) for p in paths.values())} solution steps; policy {policy.name}")
    print(f"mc: k={args.rollouts} rollouts per step; {judge_note}")
    print(f"ground truth: {truly_wrong} of {len(paths)} solutions have a wrong step; {total_wrong} incorrect solution steps")
    print()
    print("| source | counted on | solutions labelled | negative labels | neg. precision | neg. precision (prefix truth) "
          "| neg. recall | neg. recall (covered) | pos. precision | first error exact |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    singles = [*labels_by_source, *VERIFIERS]
    order = [*singles, *(f"consensus ({rule})" for rule in RULES)]
    for mode in MODES:
        for source in order:
            c = counts[(source, mode)]
            print(f"| {source} | {mode} | {c.solutions} ({_ratio(c.solutions, len(paths))}) | {c.negatives} | "
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

    kept_share = counts[("consensus (default)", MODES[1])].solutions / len(paths)
    for mode in MODES:
        print(target_line(counts, singles, mode, kept_share))
    precision = _precision(counts[("consensus (default)", MODES[1])])
    print(f"consensus_negative_precision: {'-' if precision is None else f'{precision:.3f}'} "
          f"(through the agreed first wrong step); kept share {kept_share:.3f}")


def _precision(c: Counts) -> float | None:
    return c.true_negatives / c.negatives if c.negatives else None


def target_line(counts: dict, singles: list[str], mode: str, kept_share: float) -> str:
    """Whether consensus (default) beats every single source's negative precision, counted the same way."""
    consensus = _precision(counts[("consensus (default)", mode)])
    others = {source: _precision(counts[(source, mode)]) for source in singles}
    others = {source: value for source, value in others.items() if value is not None}
    above = consensus is not None and all(consensus > value for value in others.values())
    kept = kept_share >= KEPT_SHARE_TARGET
    shown = "-" if consensus is None else f"{consensus:.3f}"
    return (
        f"target ({mode}): consensus (default) negative precision {shown} vs "
        + ", ".join(f"{source} {value:.3f}" for source, value in others.items())
        + f" ({'above all' if above else 'NOT above all'}); kept share {kept_share:.3f} "
        f"({'meets' if kept else 'BELOW'} {KEPT_SHARE_TARGET:.2f}): target {'MET' if above and kept else 'NOT met'}"
    )


def _judge(spec: str, request: LabelRequest, labels_by_source: dict[str, dict[str, StepLabel]]) -> str:
    """Add the judge as a source when its backend can do the task; otherwise say why it is skipped."""
    if spec == "none":
        return "judge: skipped (--judge none)"
    from tasks.labelers.judge import JudgeLabeler, JudgeUnavailable
    from tasks.policies.registry import PolicySpecError

    try:
        result = JudgeLabeler().label(load_policy(spec), request)
    except (JudgeUnavailable, PolicySpecError) as error:
        return f"judge: skipped, {error}"
    unreadable = len(result.unknown)
    if unreadable == len(result.judgements):
        return f"judge: skipped, {spec} answered no judge prompt readably ({unreadable} of {unreadable} unreadable)"
    labels_by_source["judge"] = {label.node_id: label for label in result.labels}
    return f"judge: {spec}, {unreadable} of {len(result.judgements)} answers unreadable"


if __name__ == "__main__":
    main()
