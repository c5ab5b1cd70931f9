"""Label accuracy per rollout spent: exhaustive mc against first-error search and adaptive labels,
on exact ground truth.

Inputs: the simulated policy at several error rates (ground truth from the policy's own
`step_is_correct` / `first_error_index`), and the embedded toy LM (ground truth by exact
recomputation of each step's arithmetic, tasks.ground_truth); the LM part is skipped, with a
message, when the embedded model has not been trained yet.

For each input, labeller and k (rollouts per step for mc, per probe for search), measured in the
same run on the same rollout tree:
- step_acc: share of tree nodes whose hard label equals the step's correctness;
- ProcessBench-style first-error F1: the harmonic mean of acc_err (solutions with a wrong step whose
  predicted first error, the first step labelled hard=False, is exactly the true one) and acc_ok
  (correct solutions predicted -1); each distinct solution path counts once;
- rollouts and generated tokens the labeller spent.
The adaptive labeller (tasks/labelers/adaptive.py) gets the arith and z3 verdicts of every node,
computed once per input (their time is in the note and in its `s`). Its budget (rollouts per
solution) is a second cost knob beside k: it runs at each k with every budget of
`--adaptive-budgets` of at least k, and once with budget 0 (verdicts and free evidence alone, no
rollouts: k = 0 in the table); its comparison, like search's over k, takes its cheapest run.
Equal F1: at the F1 level an mc run reached, the rollouts of the cheapest search run (any k)
reaching it over those of the cheapest mc run reaching it. The last line,
`search_rollout_ratio_at_equal_f1`, is that ratio at mc's best F1 on each input (exhaustive mc at
its best k), worst input; "not reached" if search reaches it at no k. The ratio at every level is
printed too: at mc's weakest levels it is bounded below by search's cost at the smallest k. The
same comparison for adaptive ends the output: `adaptive_rollout_ratio_at_equal_f1`.

An input with no erroneous solution (acc err undefined) or no correct one (acc ok undefined, as
for a weak toy LM) has no first-error F1: its rows are reported with "-" there and a note, and
the input is left out of the equal-F1 comparison and the headline, which say so.

Usage: .venv/bin/python bench/labels/label_accuracy.py [--problems 300 --ks 1 2 4 8 --lm-problems 8
       --adaptive-budgets 1 2 32]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas.records import Node, Problem, SamplingParams
from tasks.ground_truth import step_truths
from tasks.labelers.adaptive import DEFAULT_BUDGET, DEFAULT_VERIFIERS, label_adaptive
from tasks.labelers.base import LabelRequest
from tasks.labelers.registry import get_labeler
from tasks.labelers.search import search_first_errors
from tasks.policies.simulated import step_is_correct
from tasks.splitting import DEFAULT_BOUNDARY
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, path_steps, sample_solutions
from tasks.verification import load_verifiers, verify_tree

SOLUTION_PARAMS = SamplingParams(seed=0)  # the flow's seeds: solutions 2*seed, rollouts 2*seed+1
ROLLOUT_PARAMS = SamplingParams(seed=1)

SIMULATED_SPECS = [
    "simulated:error_rate=0.1",
    "simulated:error_rate=0.3",
    "simulated:error_rate=0.3,recovery_rate=0.0",  # wrong prefixes have q = 0 exactly
]

StepTruth = Callable[[str, Sequence[str]], list[bool]]


@dataclass
class Row:
    input: str
    labeler: str
    k: int
    step_acc: float
    acc_err: float
    acc_ok: float
    f1: float
    rollouts: int
    tokens: int
    seconds: float
    note: str = ""
    erroneous: int = 0  # solutions with a wrong step
    correct: int = 0  # solutions with none

    @property
    def f1_defined(self) -> bool:
        return self.erroneous > 0 and self.correct > 0


def undefined_reason(row: Row) -> str:
    """Why an input has no first-error F1, or "" when it has one."""
    missing = [kind for kind, count in (("erroneous", row.erroneous), ("correct", row.correct)) if not count]
    return f"no {' and no '.join(missing)} solutions: F1 undefined" if missing else ""


def simulated_truth(question: str, steps: Sequence[str]) -> list[bool]:
    return [step_is_correct(question, steps[:index], step) for index, step in enumerate(steps)]


def recomputed_truth(question: str, steps: Sequence[str]) -> list[bool]:
    truths = step_truths(question, steps)
    if truths is None:
        raise ValueError(f"not a synthetic question, no ground truth: {question[:60]!r}")
    return truths


def harmonic_mean(a: float, b: float) -> float:
    """NaN when either is NaN (undefined), else the harmonic mean.

    >>> harmonic_mean(0.5, 1.0), harmonic_mean(0.0, 0.0), math.isnan(harmonic_mean(float("nan"), 1.0))
    (0.6666666666666666, 0.0, True)
    """
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def ratio(part: float, whole: float) -> float:
    """part / whole, NaN when whole is 0."""
    return part / whole if whole else float("nan")


def first_false(flags: Sequence[bool]) -> int:
    return next((index for index, flag in enumerate(flags) if not flag), -1)


def evaluate(
    name: str, labeler: str, k: int, tree: list[Node], problems: dict[str, Problem], truth: StepTruth,
    hard_of: dict[str, bool], rollouts: int, tokens: int, seconds: float, note: str = "",
) -> Row:
    nodes = {node.node_id: node for node in tree}
    node_truth: dict[str, bool] = {}
    errors = oks = errors_hit = oks_hit = 0
    for leaf in (node for node in tree if node.is_terminal):
        path: list[Node] = []
        current: Node | None = leaf
        while current is not None:
            path.append(current)
            current = nodes.get(current.parent_id) if current.parent_id else None
        path.reverse()
        truths = truth(problems[leaf.problem_id].question, path_steps(leaf, nodes))
        node_truth.update((node.node_id, correct) for node, correct in zip(path, truths, strict=True))
        predicted = first_false([hard_of[node.node_id] for node in path])
        actual = first_false(truths)
        if actual == -1:
            oks, oks_hit = oks + 1, oks_hit + (predicted == -1)
        else:
            errors, errors_hit = errors + 1, errors_hit + (predicted == actual)
    step_acc = ratio(sum(hard_of[node] == correct for node, correct in node_truth.items()), len(node_truth))
    acc_err, acc_ok = ratio(errors_hit, errors), ratio(oks_hit, oks)
    row = Row(name, labeler, k, step_acc, acc_err, acc_ok, harmonic_mean(acc_err, acc_ok), rollouts, tokens, seconds,
              note, errors, oks)
    row.note = "; ".join(part for part in (note, undefined_reason(row)) if part)
    return row


def bench_input(
    name: str, policy, problems: list[Problem], samples: int, ks: Sequence[int], truth: StepTruth,
    adaptive_budgets: Sequence[int] = (DEFAULT_BUDGET,),
) -> list[Row]:
    solutions, _ = sample_solutions(policy, problems, samples, SOLUTION_PARAMS, DEFAULT_BOUNDARY)
    tree = build_tree(solutions)
    by_id = {problem.problem_id: problem for problem in problems}
    wrong = sum(not solution.is_correct for solution in solutions)
    print(f"{name}: {len(problems)} problems, {len(solutions)} solutions ({wrong} with a wrong answer), {len(tree)} nodes")
    began = time.perf_counter()
    questions = {problem.problem_id: problem.question for problem in problems}
    verdicts = verify_tree({n.node_id: n for n in tree}, questions, load_verifiers(DEFAULT_VERIFIERS))
    verify_seconds = time.perf_counter() - began
    rows = []
    tree_nodes = {n.node_id: n for n in tree}
    free = LabelRequest(tree_nodes, by_id, tree, 1, ROLLOUT_PARAMS)
    rows.append(adaptive_row(name, policy, free, 0, verdicts, verify_seconds, tree, by_id, truth))
    for k in ks:
        request = LabelRequest({n.node_id: n for n in tree}, by_id, tree, k, ROLLOUT_PARAMS)
        began = time.perf_counter()
        mc = get_labeler("mc").label(policy, request)
        seconds = time.perf_counter() - began
        hard = {label.node_id: label.hard for label in mc.labels}
        rows.append(evaluate(name, "mc", k, tree, by_id, truth, hard, len(mc.rollouts), mc.usage.generated_tokens, seconds))
        began = time.perf_counter()
        outcome = search_first_errors(policy, request)
        seconds = time.perf_counter() - began
        hard = {label.node_id: label.hard for label in outcome.result.labels}
        fresh = sum(trace.fresh_probes for trace in outcome.traces)
        reused = sum(trace.reused_probes for trace in outcome.traces)
        note = f"probes {fresh} + {reused} reused; {outcome.disagreements} disagreements"
        rows.append(
            evaluate(name, "search", k, tree, by_id, truth, hard, len(outcome.result.rollouts),
                     outcome.result.usage.generated_tokens, seconds, note)
        )
        for budget in sorted(b for b in adaptive_budgets if b >= k):
            rows.append(adaptive_row(name, policy, request, budget, verdicts, verify_seconds, tree, by_id, truth))
    return rows


def adaptive_row(
    name: str, policy, request: LabelRequest, budget: int, verdicts: dict, verify_seconds: float,
    tree: list[Node], by_id: dict[str, Problem], truth: StepTruth,
) -> Row:
    began = time.perf_counter()
    adaptive = label_adaptive(policy, request, verdicts, budget)
    seconds = time.perf_counter() - began + verify_seconds
    hard = {label.node_id: label.hard for label in adaptive.result.labels}
    note = (f"budget {budget}; {adaptive.verdicts_used} of {len(adaptive.traces)} solutions bounded by a verdict; "
            f"{adaptive.out_of_budget} out of budget; verifiers {verify_seconds:.1f} s")
    k = request.rollouts_per_step if budget else 0
    return evaluate(name, "adaptive", k, tree, by_id, truth, hard, len(adaptive.result.rollouts),
                    adaptive.result.usage.generated_tokens, seconds, note)


def cheapest(rows: list[Row], name: str, labeler: str, f1: float) -> Row | None:
    """The run of `labeler` on input `name` with the fewest rollouts whose F1 is at least `f1`."""
    reaching = [
        row for row in rows if row.input == name and row.labeler == labeler and row.f1_defined and row.f1 >= f1
    ]
    return min(reaching, key=lambda row: (row.rollouts, row.k), default=None)


@dataclass(frozen=True)
class EqualF1:
    input: str
    level: Row  # the mc run whose F1 sets the level
    mc: Row  # the cheapest mc run reaching it
    search: Row | None  # the cheapest run of the compared labeller reaching it, None if none does

    @property
    def ratio(self) -> float | None:
        return None if self.search is None else ratio(self.search.rollouts, self.mc.rollouts)


def equal_f1(rows: list[Row], labeler: str = "search") -> list[EqualF1]:
    """At each F1 level an mc run reached: the cheapest `labeler` and cheapest mc run reaching it.
    Runs without a defined F1 set no level (see `left_out`)."""
    comparisons = []
    for level in (row for row in rows if row.labeler == "mc" and row.f1_defined):
        mc = cheapest(rows, level.input, "mc", level.f1)
        comparisons.append(EqualF1(level.input, level, mc, cheapest(rows, level.input, labeler, level.f1)))
    return comparisons


def left_out(rows: list[Row]) -> dict[str, str]:
    """Inputs with no defined F1, and why: reported in the table, not in the headline."""
    return {row.input: undefined_reason(row) for row in rows if not row.f1_defined}


def headline(comparisons: list[EqualF1]) -> float | None:
    """The worst input's ratio at mc's best F1 (over k) on that input; None if search never gets
    there on some input, or if no input has a defined F1 (then `comparisons` is empty)."""
    if not comparisons:
        return None
    worst = 0.0
    for name in dict.fromkeys(c.input for c in comparisons):
        best = max((c for c in comparisons if c.input == name), key=lambda c: (c.level.f1, -c.level.rollouts))
        if best.ratio is None:
            return None
        worst = max(worst, best.ratio)
    return worst


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| input | labeler | k | step acc | acc err | acc ok | first-error F1 | rollouts | tokens | s | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.input} | {row.labeler} | {row.k} | {_number(row.step_acc)} | {_number(row.acc_err)} "
            f"| {_number(row.acc_ok)} | {_number(row.f1)} | {row.rollouts} | {row.tokens} | {row.seconds:.1f} | {row.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=300, help="synthetic problems per simulated input")
    parser.add_argument("--samples", type=int, default=4, help="solutions per problem")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8], help="rollouts per step / probe")
    parser.add_argument("--specs", nargs="+", default=SIMULATED_SPECS, help="simulated policy specs")
    parser.add_argument("--lm-problems", type=int, default=8, help="problems for the toy LM (CPU-bound)")
    parser.add_argument("--lm-policy", default="embedded", help="policy spec of the LM input")
    parser.add_argument("--seed", type=int, default=0, help="problem seed (the LM trains on seed 1000)")
    parser.add_argument("--adaptive-budgets", type=int, nargs="+", default=[1, 2, DEFAULT_BUDGET],
                        help="adaptive rollouts per solution (each run at every k it affords)")
    args = parser.parse_args()

    from tasks.policies.registry import PolicySpecError, load_policy

    began = time.perf_counter()
    rows: list[Row] = []
    for spec in args.specs:
        problems = generate_problems(args.problems, args.seed)
        rows += bench_input(spec, load_policy(spec), problems, args.samples, args.ks, simulated_truth,
                            args.adaptive_budgets)
    try:
        lm = load_policy(args.lm_policy)
    except PolicySpecError as error:
        print(f"toy LM part skipped: {error} (train it with `prmforge policy train`)")
    else:
        problems = generate_problems(args.lm_problems, args.seed)
        rows += bench_input(args.lm_policy, lm, problems, args.samples, args.ks, recomputed_truth,
                            args.adaptive_budgets)

    print()
    print(table(rows))
    print()
    by_key = {(row.input, row.labeler, row.k): row for row in rows}
    for labeler in ("search", "adaptive"):  # at the same k; adaptive with its largest budget
        for row in (r for r in rows if r.labeler == "mc"):
            other = by_key[(row.input, labeler, row.k)]
            print(f"{row.input} k={row.k}: {labeler}/mc rollouts {_number(ratio(other.rollouts, row.rollouts))}, "
                  f"tokens {_number(ratio(other.tokens, row.tokens))}, F1 {_number(other.f1)} vs {_number(row.f1)}")
    for name, why in left_out(rows).items():
        print(f"{name}: left out of the equal-F1 comparison and the headline ({why})")
    headlines = {labeler: report_equal_f1(rows, labeler) for labeler in ("search", "adaptive")}
    print(f"total {time.perf_counter() - began:.0f} s")
    for labeler, shown in headlines.items():
        print(f"{labeler}_rollout_ratio_at_equal_f1: {shown}")


def report_equal_f1(rows: list[Row], labeler: str) -> str:
    """Print `labeler`'s ratio at every mc F1 level; return its headline as shown."""
    comparisons = equal_f1(rows, labeler)
    for c in comparisons:
        searched = "never reaches it" if c.search is None else (
            f"{labeler} needs {c.search.rollouts} (k={c.search.k}): ratio {_number(c.ratio)}")
        print(f"{c.input}: F1 >= {c.level.f1:.3f} (mc k={c.level.k}): mc needs {c.mc.rollouts} (k={c.mc.k}), {searched}")
    ratios = [c.ratio for c in comparisons]
    worst = "no input with a defined F1" if not ratios else "not reached" if None in ratios else _number(max(ratios))
    print(f"{labeler}: worst ratio over every mc F1 level: {worst}")
    value = headline(comparisons)
    if not comparisons:
        return "undefined (no input has both erroneous and correct solutions)"
    shown = "not reached" if value is None else _number(value)
    if left_out(rows):
        shown += f" (over {len({c.input for c in comparisons})} inputs; left out: {', '.join(left_out(rows))})"
    return shown


if __name__ == "__main__":
    main()
