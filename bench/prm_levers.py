"""Levers for the PRM's first-error F1, measured outside the warehouse: verifier-checked slip negatives
and a base adapted to long solutions (issue 12).

prm_quality.py's best PRM (prm_arith) learns from the arith verifier's labels on the policy's own
solutions, where few steps are labelled bad. This bench asks whether more negatives of the same kind
help: the product's slip variants (tasks/augment.py, `prmforge dataset build --slips N`) give every
solution up to `--slips` copies cut after one of its good steps, whose stated result is moved by a
little. A copy is kept only when the arith verifier calls the moved step invalid, so every added
label comes from the label source, none from the ground truth.

  pool       `--problems` synthetic problems (2-8 steps, prm_quality.py's pool seed) x 2 solutions
             from vllm:embedded; labels: the arith verifier's, up to its first invalid step
  models     the same training budget for each (`--steps` optimizer steps of 8 solutions):
             arith         the pool alone (prm_quality.py's prm_arith, rebuilt here)
             arith_slips   the pool and its slip copies
             arith_slips_adapted   the same on the policy adapted to reference solutions
                           (prm_quality.py's adapted_policy: its positions past ~192 tokens trained)
             and, with `--long-steps N`, the last one trained N steps
  measured   first-error F1 on prm_quality.py's synthetic ProcessBench (400 rows, threshold from 200
             other rows), with the untrained and adapted policy's surprise beside them

Usage: .venv/bin/python bench/prm_levers.py [--problems 1000 --slips 2 --steps 400 --long-steps 1200]
Results are kept in --work (default bench/.prm_levers). Last line: `prm_levers_best_f1: X`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import prm_quality


# Training on the pool undoes the adaptation (the adapted base alone reads first errors better than
# any PRM trained on it): ways to train the head while the base LM moves less.
KEEP_THE_ADAPTATION = {
    "arith_slips_adapted_lr1e-5": {"learning_rate": 1e-5},
    "arith_slips_adapted_lora8": {"lora_rank": 8},
    "arith_slips_adapted_lm3": {"lm_weight": 3.0},
    "arith_slips_adapted_lr3e-4": {"learning_rate": 3e-4},
}


def sample_pool(work: Path, problems: int, samples: int) -> list:
    from schemas.records import SamplingParams
    from tasks.policies.registry import load_policy
    from tasks.splitting import DEFAULT_BOUNDARY
    from tasks.synthetic import generate_problems
    from tasks.tree import sample_solutions

    chosen = generate_problems(problems, prm_quality.POOL_SEED, 2, 8)
    solutions, _ = sample_solutions(load_policy("vllm:embedded"), chosen, samples,
                                    SamplingParams(seed=prm_quality.POOL_SEED, max_new_tokens=200), DEFAULT_BOUNDARY)
    questions = {p.problem_id: p.question for p in chosen}
    return [[s.problem_id, questions[s.problem_id], list(s.steps), s.is_correct] for s in solutions]


def pool_frame(pool: list):
    """The pool as a dataset version's rows (tasks/dataset.py's columns), every solution in the
    train split, labelled by the arith verifier up to its first invalid step."""
    import polars as pl

    from tasks.dataset import STEPWISE_SCHEMA

    rows = []
    for index, (problem_id, question, steps, correct) in enumerate(pool):
        if not steps:
            continue
        found = prm_quality.arith_verdicts(question, steps)
        first = next((position for position, verdict in enumerate(found) if verdict == "invalid"), len(found))
        labels = [position < first for position in range(len(steps))]
        rows.append({"solution_id": f"s{index}", "problem_id": problem_id, "split": "train", "prompt": question,
                     "completions": steps, "labels": labels, "soft_labels": [float(label) for label in labels],
                     "node_ids": [f"s{index}-{position}" for position in range(len(steps))],
                     "is_correct": bool(correct), "variant": "original"})
    return pl.DataFrame(rows, schema=STEPWISE_SCHEMA, orient="row")


def examples(pool: list, slips: int, references: int = 0) -> list:
    """The pool's solutions with the verifier's labels; with `references` (the pool's problem count),
    the product's reference rows (tasks/augment.py: `dataset build --references`, every step good);
    with `slips`, the product's slip variants of both (`dataset build --slips N`)."""
    import polars as pl

    from tasks.augment import reference_rows, slip_variants
    from tasks.frames import problems_frame
    from tasks.prm.data import examples_from_frame
    from tasks.synthetic import generate_problems

    frame = pool_frame(pool)
    if references:
        worked = problems_frame(generate_problems(references, prm_quality.POOL_SEED, 2, 8), run_id="bench")
        frame = pl.concat([frame, reference_rows(worked, frame)])
    if slips:
        frame = pl.concat([frame, slip_variants(frame, slips, seed=0)])
    return examples_from_frame(frame)


def train(work: Path, name: str, train_on: list, base: str | None, steps: int, **settings) -> str:
    """A PRM trained as `prmforge train` trains one (tasks/prm/train.py), saved to work/name/model;
    `settings` are PRMTrainConfig fields (learning_rate, lora_rank, lm_weight, ...)."""
    from tasks.prm.config import PRMTrainConfig
    from tasks.prm.model import device_for, load_for_training, max_positions, resolve_base, set_cpu_threads
    from tasks.prm.train import train_loop, training_examples

    output = work / name / "model"
    if output.exists():
        return str(output)
    set_cpu_threads()
    config = PRMTrainConfig(steps=steps, batch_size=8, dataset_version=1, **settings)
    model, tokenizer = load_for_training(resolve_base(base), config.label_kind, config.kind, config.seed,
                                         config.dropout, config.lm_weight)
    encoded, skipped = training_examples(tokenizer, train_on, config.kind, config.label_kind, max_positions(model.config))
    began = time.perf_counter()
    train_loop(model, encoded, config, tokenizer.pad_token_id, device_for(), work / name)
    model.to("cpu").save_pretrained(output)
    tokenizer.save_pretrained(output)
    print(f"  trained {name}: {len(encoded)} solutions ({len(skipped)} skipped), {steps} steps, "
          f"{time.perf_counter() - began:.0f} s", flush=True)
    return str(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2, help="solutions per pool problem")
    parser.add_argument("--slips", type=int, default=2, help="slip copies per solution")
    parser.add_argument("--adapted-only", action="store_true",
                        help="train only the slips-on-the-adapted-base model (and the levers asked for)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--long-steps", type=int, default=1200, help="0 to skip the longer run")
    parser.add_argument("--keep", action="store_true",
                        help="also the levers that keep the adapted base's surprise intact while the head learns")
    parser.add_argument("--references", action="store_true",
                        help="also the pool problems' reference solutions (and their slips) as training solutions")
    parser.add_argument("--bon", action="store_true",
                        help="also Best-of-N for the best model, with an ORM and an implicit PRM on the pool's outcomes")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / ".prm_levers")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    pool = prm_quality.stage(work, "pool", lambda: sample_pool(work, args.problems, args.samples))
    plain, slipped = examples(pool, 0), examples(pool, args.slips)
    negatives = sum(not all(example.labels) for example in slipped)
    print(f"pool: {len(plain)} solutions, {sum(not all(e.labels) for e in plain)} with a bad step; "
          f"with slips: {len(slipped)} ({negatives} with a bad step)")
    settings = argparse.Namespace(pb_rows=400, pool_problems=1000)
    adapted = prm_quality.stage(work, "adapted_policy", lambda: prm_quality.adapted_policy(work, settings))
    models = {} if args.adapted_only else {
        "arith": train(work, "arith", plain, None, args.steps),
        "arith_slips": train(work, "arith_slips", slipped, None, args.steps),
    }
    models["arith_slips_adapted"] = train(work, "arith_slips_adapted", slipped, adapted, args.steps)
    if args.long_steps:
        name = f"arith_slips_adapted_{args.long_steps}"
        models[name] = train(work, name, slipped, adapted, args.long_steps)
    for name, options in KEEP_THE_ADAPTATION.items() if args.keep else ():
        models[name] = train(work, name, slipped, adapted, args.steps, **options)
    if args.references:
        # Long negatives: the pool holds few well-formed long solutions (the policy stops or repeats
        # after step 6), so its slip copies are short; the reference solutions and their slips are long.
        with_references = examples(pool, args.slips, references=args.problems)
        print(f"pool and references with slips: {len(with_references)} solutions "
              f"({sum(not all(e.labels) for e in with_references)} with a bad step)")
        models["refs_slips"] = train(work, "refs_slips", with_references, None, args.steps)
        models["refs_slips_adapted"] = train(work, "refs_slips_adapted", with_references, adapted, args.steps)
    (work / "pb_scores.json").unlink(missing_ok=True)  # the models may have changed since the last run
    rows = prm_quality.first_errors(models, work, settings)
    lengths = sorted(next(iter(rows.values())).by_steps)
    print(f"\n{'model':<28} {'F1 [95% CI]':<24} {'erroneous':>9} {'correct':>8}  exact by steps: "
          + " ".join(f"{n:>4}" for n in lengths))
    for row in rows.values():
        print(f"{row.model:<28} {row.f1.shown():<24} {row.erroneous:>9.3f} {row.correct:>8.3f}                  "
              + " ".join(f"{row.by_steps[n]:>4.2f}" for n in lengths))
    best = max(models, key=lambda name: rows[name].calibration_f1)
    print(f"best trained PRM on the calibration rows: {best}")
    for name in models if "arith" in models else ():
        if name != "arith":
            print(f"{name} - arith F1 (paired over rows): {prm_quality.paired_f1_difference(rows[name], rows['arith']).shown()}")
    if args.bon:
        best_of_n_table(work, models, rows, best, plain, args.steps, settings)
    print(f"prm_levers_best_f1: {rows[best].f1.estimate:.3f}")


def best_of_n_table(work: Path, models: dict, rows: dict, best: str, plain: list, steps: int, settings) -> None:
    """prm_quality.py's Best-of-N on its 200 held-out problems (5-8 steps, 16 fresh solutions each)
    for the best lever model, beside an ORM and an implicit PRM trained on the pool's outcomes."""
    from tasks.prm.stats import paired_difference

    settings.bon_problems, settings.bon_samples, settings.policy = 200, 16, "vllm:embedded"
    problems = prm_quality.stage(work, "bon_problems", lambda: prm_quality.held_out_problems(settings))
    samples = prm_quality.stage(work, "bon_samples", lambda: prm_quality.sample_best_of_n(settings, problems))
    compared = {best: models[best], "orm": train(work, "orm", plain, None, steps, kind="orm"),
                "implicit": implicit(work, plain, steps)}
    curves = prm_quality.best_of_n_curves(compared, work, settings, problems["measured"], samples, best,
                                          rows[best].threshold)
    sizes = sorted({p.n for p in curves["oracle"]})
    methods = ["oracle", "exact_steps", "majority", "random", "arith_min", "arith_vote", "orm_last", "implicit_min",
               "adapted_surprise_min", f"{best}_min", f"{best}_vote", f"{best}_filtered_vote"]
    print(f"\nBest-of-N on {len(problems['measured'])} held-out problems (5-8 steps); accuracy [95% CI over problems]")
    print(f"{'method':<40} " + " ".join(f"{'N=' + str(n):>21}" for n in sizes))
    for method in methods:
        shown = [prm_quality.point(curves, method, n) for n in sizes]
        print(f"{method:<40} " + " ".join(f"{p.accuracy:.3f} [{p.low:.2f},{p.high:.2f}]".rjust(21) for p in shown))
    at = {method: prm_quality.point(curves, method, 16).values for method in methods}
    headline = f"{best}_{prm_quality.HEADLINE_AGGREGATION}"
    for method, baseline in [("oracle", "majority"), ("exact_steps", "majority"), ("arith_vote", "majority"),
                             (f"{best}_min", "majority"), *[(headline, other) for other in
                                                            ("majority", "orm_last", "implicit_min", "random")]]:
        print(f"{method} - {baseline} at N=16 (paired): {paired_difference(at[method], at[baseline]).shown()}")
    difference = paired_difference(at[headline], at["majority"])
    print(f"prm_first_error_f1: {rows[best].f1.estimate:.3f}")
    print(f"prm_bon16_minus_majority: {difference.estimate:.3f}")
    print(f"prm_bon16_minus_majority_ci_low: {difference.low:.3f}")


def implicit(work: Path, train_on: list, steps: int) -> str:
    """The implicit PRM on the pool's outcomes, as `prmforge train --kind implicit` trains it."""
    from tasks.prm.config import PRMTrainConfig
    from tasks.prm.implicit import train_implicit
    from tasks.prm.model import device_for, resolve_base, set_cpu_threads

    output = work / "implicit" / "model"
    if output.exists():
        return str(output)
    set_cpu_threads()
    config = PRMTrainConfig(steps=steps, batch_size=8, dataset_version=1, kind="implicit")
    model, tokenizer, _ = train_implicit(resolve_base(None), train_on, steps, config.batch_size, config.learning_rate,
                                         config.beta, config.seed, device_for())
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return str(output)


if __name__ == "__main__":
    main()
