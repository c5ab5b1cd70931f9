"""The step verifiers before and after role-aware claim reading, measured in the same run.

Workloads, each scored as `prmforge verify --processbench` scores it (tasks/processbench.py):
- corpus dev and corpus held-out: the hand-written corpus of realistic LLM solutions in
  tests/data/verifier_corpus/ (see its README; the held-out part was not looked at while the
  verifiers were developed);
- blind corpus audit and held-out: the independent audit's corpus in tests/data/verifier_blind/
  (see its README: the audit part was written before its author read the extraction code, the
  held-out part after the fixes, without reading the code while writing it);
- synthetic: solutions of the simulated policy (tasks/policies/simulated.py) on the project's
  synthetic problems, labelled with their exact first wrong step. This is also the timing
  workload: the per-step times quoted in bench/RESULTS.md (arith 0.34 ms, z3 2.14 ms) were taken
  on it.

The baseline is the verifier code of a git revision (default: the commit before this work),
copied from `git show` into a temporary package and imported beside the current code, so both
run in one process on the same machine state. Each timed pass runs after an untimed warm-up
pass over the same rows (the readers' caches are filled in both).

Both versions run with a per-step limit of 60 s instead of their defaults, so a busy machine
cannot turn verdicts into timeouts (the scores would then measure the load).

Times: the verdicts' own milliseconds (wall time inside the verifier, as `prmforge verify` and the
verdicts table report them) and the process's CPU milliseconds per step over the timed pass. The
machines are shared, so wall time swings with other work; the ratios use CPU time.

Prints one table per workload, then the per-step CPU time ratios (after / before) and ends with
one line: `verifier_time_ratio_max: <the larger of the arith and z3 ratios on the synthetic workload>`.

Usage: .venv/bin/python bench/verifiers.py [--baseline REV] [--problems 150 --samples 4 --seed 0]
       [--parts dev,heldout] [--blind-parts audit,heldout,check,round4,round5] [--write-pins]
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.records import SamplingParams  # noqa: E402
from tasks.policies.registry import load_policy  # noqa: E402
from tasks.policies.simulated import first_error_index  # noqa: E402
from tasks.processbench import ProcessBenchRow, read_processbench, score_verifier  # noqa: E402
from tasks.splitting import DEFAULT_BOUNDARY  # noqa: E402
from tasks.synthetic import generate_problems  # noqa: E402
from tasks.tree import build_tree, sample_solutions  # noqa: E402
from tasks.verification import solution_paths  # noqa: E402
from tasks.verifiers.base import StepContext  # noqa: E402

BASELINE = "c88139e"  # the last commit before role-aware reading
BASELINE_PACKAGE = "baseline_verifiers"
BASELINE_FILES = ("__init__.py", "base.py", "claims.py", "arith.py", "z3_verifier.py")
VERIFIERS = (("arith", "ArithVerifier"), ("z3", "Z3Verifier"))
CORPUS = ROOT / "tests" / "data" / "verifier_corpus"
BLIND = ROOT / "tests" / "data" / "verifier_blind"  # the independent audit's corpus
STEP_LIMIT_MS = 60_000.0
BOOTSTRAP = 2000  # resamples for each 95% interval
PINS = CORPUS / "verdicts.json"
# Each corpus folder and its parts; each folder pins its verdicts in its verdicts.json.
CORPORA = {CORPUS: ("dev", "heldout"), BLIND: ("audit", "heldout", "check", "round4", "round5")}


def baseline_package(revision: str, folder: Path) -> str:
    """Copies tasks/verifiers at `revision` into `folder` as a package; returns its name."""
    name = BASELINE_PACKAGE
    package = folder / name
    package.mkdir()
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{revision}:tasks/verifiers/"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    # The modules arith and z3 import (roles, knowledge, reading, units came later); code and lean
    # are not needed.
    files = [file for file in listed if file.endswith(".py") and file not in ("code.py", "lean.py")]
    for file in files or BASELINE_FILES:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:tasks/verifiers/{file}"],
            check=True, capture_output=True, text=True,
        ).stdout
        (package / file).write_text(text.replace("tasks.verifiers.", f"{name}."), encoding="utf-8")
    sys.path.insert(0, str(folder))
    return name


def load(package: str) -> list:
    """The package's arith and z3 verifiers, with step limits no busy machine reaches.

    The machines are shared: with the default limits (arith 2 s, z3 10 s a step) a loaded machine
    turns some verdicts into timeouts, and the scores would measure the load, not the verifiers.
    """
    verifiers = []
    for module_name, class_name in VERIFIERS:
        module = importlib.import_module(f"{package}.{'arith' if module_name == 'arith' else 'z3_verifier'}")
        config_class = getattr(module, "ArithConfig" if module_name == "arith" else "Z3Config")
        verifiers.append(getattr(module, class_name)(config_class(timeout_ms=STEP_LIMIT_MS)))
    return verifiers


def synthetic_rows(problems: int, samples: int, seed: int) -> list[ProcessBenchRow]:
    """Simulated-policy solutions as ProcessBench rows, each with its exact first wrong step."""
    policy = load_policy("simulated")
    chosen = generate_problems(problems, seed)
    questions = {problem.problem_id: problem.question for problem in chosen}
    solutions, _ = sample_solutions(policy, chosen, samples, SamplingParams(seed=seed * 2), DEFAULT_BOUNDARY)
    nodes = {node.node_id: node for node in build_tree(solutions)}
    rows = []
    for solution_id, path in solution_paths(nodes).items():
        question, steps = questions[path[0].problem_id], tuple(node.step_text for node in path)
        rows.append(ProcessBenchRow(solution_id, question, steps, first_error_index(question, steps)))
    return rows


def run(verifier, rows: list[ProcessBenchRow]) -> list[list]:
    return [
        [verifier.verify(step, StepContext(row.problem, row.steps[:index])) for index, step in enumerate(row.steps)]
        for row in rows
    ]


def clear_caches(package: str) -> None:
    """Empties every lru_cache of the package's modules, so a timed pass starts cold."""
    for name, module in list(sys.modules.items()):
        if name.startswith(f"{package}.") or name == package:
            for value in vars(module).values():
                if callable(getattr(value, "cache_clear", None)):
                    value.cache_clear()


def measure(verifiers: list, rows: list[ProcessBenchRow], package: str) -> list:
    """(score, CPU ms per step, verdicts) per verifier, timed from cold reading caches, arith first.

    As in the generate flow, the verifiers judge the same steps one after the other, so z3
    finds the steps already read by arith. CPU time is the process's, all threads.
    """
    clear_caches(package)
    results = []
    for verifier in verifiers:
        began = time.process_time()
        verdicts = run(verifier, rows)
        cpu_ms = (time.process_time() - began) * 1000.0
        score = score_verifier(verifier.name, rows, verdicts)
        results.append((score, cpu_ms / max(1, score.steps), verdicts))
    return results


def step_counts(verdicts: list[list], gold: list[list[str]]) -> list[tuple[int, int, int, int, int]]:
    """Per solution: (invalid verdicts, those on a gold-valid step, gold-invalid steps, those
    found, false alarms before the first gold-invalid step).

    A false alarm here is an `invalid` verdict on a step whose gold verdict is valid, wherever it
    is in the solution: a step that computes right from a value an earlier step got wrong is
    gold-valid, and an `invalid` on it counts too (the last count leaves those out); recall is
    the share of the gold-invalid steps that get `invalid`.
    """
    counts = []
    for row_verdicts, row_gold in zip(verdicts, gold, strict=True):
        flagged = [verdict.verdict == "invalid" for verdict in row_verdicts]
        wrong = [label == "invalid" for label in row_gold]
        first = wrong.index(True) if True in wrong else len(wrong)
        counts.append((
            sum(flagged),
            sum(f and not w for f, w in zip(flagged, wrong, strict=True)),
            sum(wrong),
            sum(f and w for f, w in zip(flagged, wrong, strict=True)),
            sum(flagged[:first]),
        ))
    return counts


def ratio_interval(pairs: list[tuple[int, int]], resamples: int = BOOTSTRAP, seed: int = 0) -> str:
    """`share (numerator/denominator) [low, high]`: a 95% percentile bootstrap over solutions.

    `pairs` holds one (numerator, denominator) per solution; solutions, not steps, are resampled,
    because the steps of one solution are not independent. A resample with a zero denominator is
    left out of the interval. At a share of 0 or 1 every resample gives the same share, so the
    bootstrap interval is a point; the exact (Clopper-Pearson) bound on the count is added then.
    """
    top, bottom = sum(pair[0] for pair in pairs), sum(pair[1] for pair in pairs)
    if not bottom:
        return "- (0/0)"
    generator = random.Random(seed)
    shares = []
    for _ in range(resamples):
        drawn = [pairs[generator.randrange(len(pairs))] for _ in pairs]
        denominator = sum(pair[1] for pair in drawn)
        if denominator:
            shares.append(sum(pair[0] for pair in drawn) / denominator)
    shares.sort()
    low, high = shares[int(0.025 * len(shares))], shares[min(len(shares) - 1, int(0.975 * len(shares)))]
    exact = ""
    if top == 0:
        exact = f", exact upper {1 - 0.025 ** (1 / bottom):.3f}"
    elif top == bottom:
        exact = f", exact lower {0.025 ** (1 / bottom):.3f}"
    return f"{top / bottom:.3f} ({top}/{bottom}) [{low:.3f}, {high:.3f}{exact}]"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(title: str, rows: list[ProcessBenchRow], before: list, after: list,
          gold: list[list[str]] | None = None) -> dict[str, tuple[float, float]]:
    erroneous = sum(row.label != -1 for row in rows)
    print(f"\n{title}: {len(rows)} solutions ({erroneous} with an error), {sum(len(r.steps) for r in rows)} steps")
    print("| verifier | code | coverage | invalid precision | false-alarm rate | F1 | ms per step (verdict, wall) "
          "| CPU ms per step |")
    print("|---|---|---|---|---|---|---|---|")
    measured = {"before": measure(before, rows, BASELINE_PACKAGE), "after": measure(after, rows, "tasks.verifiers")}
    times = {}
    for index, (name, _) in enumerate(VERIFIERS):
        for label in ("before", "after"):
            score, cpu, _ = measured[label][index]
            print(f"| {name} | {label} | {score.coverage:.3f} ({score.steps_known}/{score.steps}) | "
                  f"{share(score.invalid_precision)} ({score.invalid_correct}/{score.invalid_verdicts}) | "
                  f"{score.false_alarm_rate:.3f} ({score.false_alarms}/{len(rows)}) | {share(score.f1)} | "
                  f"{score.ms_per_step:.3f} | {cpu:.3f} |")
        times[name] = (measured["before"][index][1], measured["after"][index][1])
    if gold is not None:
        print(f"\n{title}, per step against the gold verdicts (95% bootstrap over solutions, {BOOTSTRAP} resamples):")
        print("| verifier | code | invalid verdicts on correct steps (false-alarm share) "
              "| of them before the first error | gold errors found (recall) |")
        print("|---|---|---|---|---|")
        for index, (name, _) in enumerate(VERIFIERS):
            for label in ("before", "after"):
                counts = step_counts(measured[label][index][2], gold)
                alarms = ratio_interval([(alarm, flagged) for flagged, alarm, _, _, _ in counts])
                recall = ratio_interval([(found, wrong) for _, _, wrong, found, _ in counts])
                early = sum(count[4] for count in counts)
                print(f"| {name} | {label} | {alarms} | {early} | {recall} |")
    return times


def read_corpus(path: Path) -> tuple[list[ProcessBenchRow], list[list[str]]]:
    """A corpus part's rows and each row's gold verdict per step."""
    rows, bad = read_processbench(path)
    assert not bad, bad
    gold = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        payload = json.loads(line)
        gold[payload["id"]] = payload["step_gold"]
    return rows, [gold[row.id] for row in rows]


def corpus_verdicts(folder: Path = CORPUS) -> dict[str, dict[str, dict[str, str]]]:
    """part -> row id -> verifier -> one letter per step (v valid, i invalid, u unknown)."""
    from tasks.verifiers.arith import ArithConfig, ArithVerifier
    from tasks.verifiers.z3_verifier import Z3Config, Z3Verifier

    # Generous step limits: a pinned verdict must not depend on how busy the machine is.
    verifiers = [ArithVerifier(ArithConfig(timeout_ms=STEP_LIMIT_MS)), Z3Verifier(Z3Config(timeout_ms=STEP_LIMIT_MS))]
    pins: dict[str, dict[str, dict[str, str]]] = {}
    for part in CORPORA[folder]:
        if not (folder / f"{part}.jsonl").exists():
            continue
        rows, _ = read_processbench(folder / f"{part}.jsonl")
        pins[part] = {
            row.id: {verifier.name: "".join(v.verdict[0] for v in run(verifier, [row])[0]) for verifier in verifiers}
            for row in rows
        }
    return pins


def write_pins() -> None:
    for folder in CORPORA:
        pins = folder / "verdicts.json"
        pins.write_text(json.dumps(corpus_verdicts(folder), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {pins.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the verifiers to compare with")
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="dev,heldout", help="corpus parts to score (dev, heldout)")
    parser.add_argument("--blind-parts", default="audit,heldout,check,round4,round5",
                        help="parts of the blind audit corpus to score (audit, heldout, check, round4, round5; those present)")
    parser.add_argument("--write-pins", action="store_true",
                        help="only write the current verdicts of every corpus part to its folder's verdicts.json")
    args = parser.parse_args()
    if args.write_pins:
        write_pins()
        return

    with tempfile.TemporaryDirectory(prefix="prmforge-baseline-") as folder:
        before = load(baseline_package(args.baseline, Path(folder)))
        after = load("tasks.verifiers")
        warm_up = synthetic_rows(4, 2, args.seed + 1000)  # lazy imports (sympy, z3, the LaTeX parser)
        warm_up.append(read_processbench(CORPUS / "dev.jsonl")[0][0])
        for verifier in (*before, *after):
            run(verifier, warm_up)
        print(f"baseline: tasks/verifiers at {args.baseline}; after: the working tree")
        for part in filter(None, args.parts.split(",")):
            rows, gold = read_corpus(CORPUS / f"{part}.jsonl")
            table(f"corpus {part}", rows, before, after, gold)
        for part in filter(None, args.blind_parts.split(",")):
            if (BLIND / f"{part}.jsonl").exists():
                rows, gold = read_corpus(BLIND / f"{part}.jsonl")
                table(f"blind corpus {part}", rows, before, after, gold)
        rows = synthetic_rows(args.problems, args.samples, args.seed)
        times = table("synthetic (simulated policy, error rate 0.15)", rows, before, after)
    print()
    ratios = {}
    for name, (old, new) in times.items():
        ratios[name] = new / old if old else float("inf")
        print(f"{name}: {old:.3f} -> {new:.3f} CPU ms per step on the synthetic workload, ratio {ratios[name]:.2f}")
    print(f"verifier_time_ratio_max: {max(ratios.values()):.2f}")


if __name__ == "__main__":
    main()
