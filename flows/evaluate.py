"""The evaluate flow: score held-out solutions with a PRM, measure, store the numbers, write the report.

The held-out set is a dataset version's test split (problems never trained on: the split is fixed
per problem), or any ProcessBench-format file for first-error identification. Best-of-N reuses the
test split's solutions grouped by problem, or samples fresh ones with a policy (EvaluateConfig.bon_policy).

Every sampled solution stays a Best-of-N candidate, so N reaches the number sampled: one the PRM
cannot read (no steps, or longer than its context) ranks last for the PRM and the ORM, votes with
weight 0 in the PRM-weighted vote, and still counts for majority vote, random choice and the oracle.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import announce, stage
from flows.train import reading
from schemas.config import WarehouseConfig
from schemas.records import Problem
from schemas.tables import PROBLEMS, RUNS
from tasks.ids import content_id
from tasks.prm.config import EvaluateConfig
from tasks.prm.data import StepwiseExample, originals, processbench_rows, read_split
from tasks.prm.evaluate import (
    CLEAR, PRM_FILTERED_VOTE, PRM_VOTE, BestOfNPoint, Candidate, FirstErrorResult, best_of_n, best_of_n_sizes,
    calibration, calibration_split, choose_threshold, clear_of_errors, expected_calibration_error, first_error_result,
    label_distribution, min_on_last_share,
)
from tasks.prm.registry import (
    DatasetRef, ModelRef, evaluation_rows, find_dataset, find_model, find_orm, now, store_evaluations,
)
from tasks.prm.score import AGGREGATIONS, StepScores
from tasks.processbench import ProcessBenchRow, read_processbench
from warehouse.connection import commit, connect, rollback
from warehouse.lock import writer_lock
from warehouse.writes import insert_new, read_table

Solution = tuple[str, tuple[str, ...]]  # (problem text, steps): what a PRM scores


@dataclass
class EvaluationSummary:
    model_id: str
    model_version: int | None
    evaluation_set: str
    first_error: FirstErrorResult | None
    threshold_source: str
    best_of_n: dict[str, list[BestOfNPoint]]
    best_of_n_source: str
    min_on_last: tuple[float | None, int]
    calibration_error: float | None
    orm_model_id: str | None = None
    report_path: str | None = None
    stored: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def f1(self) -> float | None:
        return self.first_error.f1 if self.first_error else None


@task(name="score-solutions", cache_policy=NO_CACHE)
def score_solutions(model_path: str, solutions: Sequence[Solution], batch_size: int) -> dict[Solution, StepScores]:
    """Each distinct solution scored once; one that does not fit the model's context is left out."""
    from tasks.prm.model import SolutionTooLong
    from tasks.prm.score import PRMScorer

    distinct = list(dict.fromkeys(solutions))
    scorer = PRMScorer(model_path, batch_size=batch_size)
    scored: dict[Solution, StepScores] = {}
    with stage(f"scoring {len(distinct)} solutions", len(distinct)) as advance:
        for start in range(0, len(distinct), 64):
            chunk = distinct[start : start + 64]
            try:
                scored.update(zip(chunk, scorer.score_many(chunk), strict=True))
            except SolutionTooLong:
                for solution in chunk:
                    try:
                        scored[solution] = scorer.score(*solution)
                    except SolutionTooLong:
                        pass
            advance(len(chunk))
    return scored


@task(name="sample-best-of-n", cache_policy=NO_CACHE)
def sample_fresh(config: EvaluateConfig, problems: list[Problem], cache: Path) -> list[list[tuple[Solution, str | None, bool]]]:
    """`bon_samples` fresh solutions per held-out problem from `bon_policy`, empty ones included.
    They go through the generation cache, so evaluating a second model samples nothing again and
    both models are compared on the same solutions."""
    from schemas.records import SamplingParams
    from tasks.policies.cache import CachedPolicy
    from tasks.policies.registry import load_policy
    from tasks.tree import sample_solutions

    policy = CachedPolicy(load_policy(config.bon_policy), cache)
    params = SamplingParams(temperature=1.0, max_new_tokens=config.max_new_tokens, seed=config.bon_seed)
    with stage(f"sampling {config.bon_samples} solutions per held-out problem", len(problems)) as advance:
        try:
            solutions, _ = sample_solutions(policy, problems, config.bon_samples, params, config.step_boundary, progress=advance)
        finally:
            policy.close()
    question = {problem.problem_id: problem.question for problem in problems}
    groups: dict[str, list] = {problem.problem_id: [] for problem in problems}
    for solution in solutions:
        groups[solution.problem_id].append(
            ((question[solution.problem_id], tuple(solution.steps)), solution.final_answer, solution.is_correct)
        )
    return [group for group in groups.values() if group]


def dataset_groups(examples: Sequence[StepwiseExample]) -> list[list[tuple[Solution, str | None, bool]]]:
    """The test split's solutions grouped by problem, with the answer each states."""
    from tasks.answers import extract_answer

    groups: dict[str, list] = {}
    for example in originals(examples):
        groups.setdefault(example.problem_id, []).append(
            ((example.prompt, example.steps), extract_answer("\n".join(example.steps)), example.is_correct)
        )
    return list(groups.values())


def first_error_measure(
    rows: Sequence[ProcessBenchRow], scores: Sequence[Sequence[float]], config: EvaluateConfig
) -> tuple[FirstErrorResult | None, str]:
    """The threshold (given, or chosen on one part of the rows) and the numbers on the rest."""
    if not rows:
        return None, "no rows"
    labels = [row.label for row in rows]
    if config.threshold is not None:
        return first_error_result(labels, scores, config.threshold), f"threshold {config.threshold} given; all {len(rows)} rows measured"
    choose, measure = calibration_split([row.id for row in rows], config.calibration_fraction)
    if len(rows) < 4 or not choose or not measure:
        threshold = choose_threshold(labels, scores)
        return (
            first_error_result(labels, scores, threshold),
            f"too few rows ({len(rows)}) to hold out a part: threshold {threshold} chosen and measured on all rows",
        )
    threshold = choose_threshold([labels[i] for i in choose], [scores[i] for i in choose])
    result = first_error_result([labels[i] for i in measure], [scores[i] for i in measure], threshold)
    return result, (
        f"threshold {threshold} chosen for the best F1 on {len(choose)} held-out rows; "
        f"measured on the other {len(measure)}"
    )


@task(name="store-evaluations", cache_policy=NO_CACHE)
def store(warehouse: WarehouseConfig, rows: list[dict], run_id: str, model: ModelRef, config_json: str, began: float) -> int:
    with writer_lock(warehouse.data_dir, wait_seconds=60):
        connection = connect(warehouse)
        try:
            connection.execute("BEGIN")
            stored = store_evaluations(connection, rows)
            connection.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
            insert_new(connection, RUNS, RUNS.frame([{
                "run_id": run_id, "flow": "evaluate", "config_json": config_json, "finished_at": now(),
                "status": "completed", "wall_seconds": time.perf_counter() - began,
            }]))
            commit(connection, f"run {run_id}: evaluate model v{model.version}")
        except BaseException:
            rollback(connection)
            raise
        finally:
            connection.close()
    return stored


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _load(warehouse, model, dataset_version, orm) -> tuple[ModelRef, DatasetRef, ModelRef | None, list[Problem]]:
    with reading(warehouse) as connection:
        model_ref = find_model(connection, model)
        dataset = find_dataset(connection, dataset_version or model_ref.dataset_version)
        if orm:
            orm_ref = find_model(connection, orm)
        elif model_ref.kind == "orm":
            orm_ref = None
        else:
            orm_ref = find_orm(connection, model_ref.dataset_version, model_ref.base)
        problems = [
            Problem(row["problem_id"], row["question"], row["answer"], row["source"] or "")
            for row in read_table(connection, PROBLEMS).iter_rows(named=True)
        ]
    return model_ref, dataset, orm_ref, problems


@flow(name="prmforge-evaluate", log_prints=False)
def evaluate_flow(
    model: str,
    warehouse: WarehouseConfig,
    config: EvaluateConfig = EvaluateConfig(),
    processbench: Path | None = None,
    dataset_version: int | None = None,
    orm: str | None = None,
    report_dir: Path | None = None,
) -> EvaluationSummary:
    """Measure `model` (id, version or path) on `dataset_version`'s test split (default: its own)."""
    began = time.perf_counter()
    model_ref, dataset, orm_ref, problems = _load(warehouse, model, dataset_version, orm)
    notes: list[str] = []
    test = read_split(dataset.path, "test")
    everything = read_split(dataset.path, "train") + test
    if not originals(test):
        notes.append(f"dataset v{dataset.version} has no test split: Best-of-N and calibration are empty")

    announce("first-error rows")
    if processbench is not None:
        rows, bad = read_processbench(processbench)
        notes += [f"{processbench}:{row.line} skipped: {row.reason}" for row in bad]
        evaluation_set = f"processbench:{processbench.name}:{_digest(processbench)}"
    else:
        rows = processbench_rows(test)
        evaluation_set = f"dataset:v{dataset.version}:test"

    if config.bon_policy:
        test_ids = {example.problem_id for example in originals(test)}
        held_out = sorted((problem for problem in problems if problem.problem_id in test_ids), key=lambda p: p.problem_id)
        groups = sample_fresh(config, held_out, warehouse.data_dir / "cache" / "generations.sqlite")
        bon_source = (
            f"{config.bon_samples} fresh solutions per held-out problem from {config.bon_policy} (seed {config.bon_seed})"
        )
    else:
        groups = dataset_groups(test)
        bon_source = f"dataset v{dataset.version}'s test solutions, grouped by problem (none sampled afresh)"

    candidates_read = [item[0] for group in groups for item in group if item[0][1]]  # a PRM reads steps
    solutions: list[Solution] = [(row.problem, tuple(row.steps)) for row in rows]
    solutions += candidates_read
    solutions += [(example.prompt, example.steps) for example in originals(test)]
    scored = score_solutions(model_ref.path, solutions, config.batch_size)
    orm_scored = {}
    if orm_ref is not None:
        orm_scored = score_solutions(orm_ref.path, candidates_read, config.batch_size)
    else:
        notes.append(
            f"no ORM baseline for dataset v{model_ref.dataset_version}: "
            f"run `prmforge train --dataset {model_ref.dataset_version} --kind orm`"
        )

    measured = {(row.problem, tuple(row.steps)) for row in rows} | {(e.prompt, e.steps) for e in originals(test)}
    unscored = measured - set(scored)
    if unscored:
        notes.append(f"{len(unscored)} solution(s) left out: longer than the model reads")
        rows = [row for row in rows if (row.problem, tuple(row.steps)) not in unscored]
        test = [example for example in test if (example.prompt, example.steps) not in unscored]
    unread = {
        item[0] for group in groups for item in group
        if item[0] not in scored or (orm_ref is not None and item[0] not in orm_scored)
    }
    if unread:
        notes.append(
            f"{len(unread)} Best-of-N solution(s) the models cannot read (no steps, or too long) rank last "
            "for the PRM and the ORM; majority vote, random choice and the oracle still count them"
        )
    first_error, threshold_source = first_error_measure(
        rows, [scored[(row.problem, tuple(row.steps))].per_step for row in rows], config
    )
    selectors = [f"prm_{how}" for how in AGGREGATIONS] + (["orm"] if orm_ref is not None else [])
    def ranked(scores: StepScores | None, how: str) -> float:
        return -math.inf if scores is None else scores.aggregated(how)

    threshold = first_error.threshold if first_error is not None else None
    candidates = [
        [
            Candidate(answer, correct, {
                **{f"prm_{how}": ranked(scored.get(solution), how) for how in AGGREGATIONS},
                CLEAR: clear_of_errors(getattr(scored.get(solution), "per_step", None), threshold),
                **({"orm": ranked(orm_scored.get(solution), "last")} if orm_ref is not None else {}),
            })
            for solution, answer, correct in group
        ]
        for group in groups
    ]
    largest = max((len(group) for group in groups), default=0)
    curves = best_of_n(
        candidates, selectors, best_of_n_sizes(largest), config.subset_draws, config.seed,
        weighted_votes={PRM_VOTE: "prm_min"} | ({PRM_FILTERED_VOTE: CLEAR} if threshold is not None else {}),
    )
    min_last = min_on_last_share([scored[item[0]].per_step for group in groups for item in group if item[0] in scored])
    step_predictions, step_outcomes = [], []
    for example in originals(test):
        step_predictions += scored[(example.prompt, example.steps)].per_step
        step_outcomes += list(example.labels)
    bins = calibration(step_predictions, step_outcomes)
    ece = expected_calibration_error(bins)

    details = {"evaluation_set": evaluation_set, "dataset_version": dataset.version, "config": config.model_dump()}
    values: dict[str, dict[str, tuple[float | None, int]]] = {}
    if first_error is not None:
        values["first_error"] = {
            "f1": (first_error.f1, first_error.rows),
            "accuracy_erroneous": (first_error.accuracy_erroneous, first_error.erroneous),
            "accuracy_correct": (first_error.accuracy_correct, first_error.correct),
            "threshold": (first_error.threshold, first_error.rows),
        }
    values["best_of_n"] = {f"{method}@{point.n}": (point.accuracy, point.problems) for method, points in curves.items() for point in points}
    values["min_on_last"] = {"share": min_last}
    values["calibration"] = {"ece": (ece, len(step_predictions))}
    run_id = content_id("run", "evaluate", model_ref.model_id, evaluation_set, config.model_dump_json(), orm_ref.model_id if orm_ref else "")
    evaluation_key = f"{evaluation_set}|{config.model_dump_json()}"  # other settings, other rows
    rows_out: list[dict] = []
    for kind, metrics in values.items():
        kind_details = details | ({"threshold_source": threshold_source} if kind == "first_error" else {})
        rows_out += evaluation_rows(model_ref.model_id, evaluation_key, kind, metrics, kind_details, run_id)
    stored = 0
    if model_ref.version is not None:
        stored = store(warehouse, rows_out, run_id, model_ref, config.model_dump_json(), began)
    else:
        notes.append(f"{model_ref.path} is not a registered model: results were not stored")

    summary = EvaluationSummary(
        model_ref.model_id, model_ref.version, evaluation_set, first_error, threshold_source, curves, bon_source,
        min_last, ece, orm_ref.model_id if orm_ref else None, None, stored, notes,
    )
    if report_dir is not None:
        summary.report_path = str(write_report(summary, model_ref, dataset, orm_ref, bins, label_distribution(everything), report_dir))
    return summary


@task(name="write-report", cache_policy=NO_CACHE)
def write_report(summary, model_ref: ModelRef, dataset: DatasetRef, orm_ref, bins, distribution, report_dir: Path) -> Path:
    from tasks.prm.report import ReportData, render_report

    facts = [
        ("model", f"v{model_ref.version} ({model_ref.kind}, {model_ref.label_kind} labels) {model_ref.model_id}"
         if model_ref.version is not None else model_ref.path),
        ("model path", model_ref.path),
        ("trained on", f"dataset v{model_ref.dataset_version} (snapshot {model_ref.dataset_snapshot})"),
        ("evaluated on", f"{summary.evaluation_set}; held-out problems of dataset v{dataset.version} (snapshot {dataset.snapshot_id})"),
        ("ORM baseline", f"{orm_ref.model_id} (v{orm_ref.version})" if orm_ref else "none"),
    ]
    data = ReportData(
        title=f"PRM evaluation: model v{model_ref.version}" if model_ref.version else "PRM evaluation",
        facts=facts, first_error=summary.first_error, threshold_source=summary.threshold_source,
        best_of_n=summary.best_of_n, best_of_n_source=summary.best_of_n_source, min_on_last=summary.min_on_last,
        calibration=bins, calibration_error=summary.calibration_error, label_distribution=distribution,
        notes=summary.notes,
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    name = f"model-v{model_ref.version}.html" if model_ref.version is not None else f"model-{model_ref.model_id[:12]}.html"
    path = report_dir / name
    path.write_text(render_report(data))
    announce(f"report written to {path}")
    return path
