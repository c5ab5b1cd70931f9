"""The nightly flow: fresh seed problems -> gated data and a new dataset -> retrain -> compare -> promote.

Every decision lands in the decisions table as it is made (one snapshot per stage), so a night
that stops early still says why; a stage that fails records a `failed` decision with the error's
first line before the error goes on to the command line. The comparison measures the candidate and the promoted model on
the same fresh Best-of-N solutions of the held-out problems of the dataset version this night built,
and promotes only on a paired bootstrap interval above zero (tasks/prm/loop.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.evaluate import evaluate_flow
from flows.generate import generate_flow
from flows.progress import announce
from flows.train import model_version_lock, reading, train_flow
from schemas.config import GenerateConfig, WarehouseConfig
from schemas.errors import UserError
from schemas.tables import RUNS
from tasks.gates import GateFailed
from tasks.ids import content_id
from tasks.prm.config import EvaluateConfig, NightlyConfig, PRMTrainConfig
from tasks.prm.loop import next_seed, promotion_on_evidence, seeds_of_generate_runs
from tasks.prm.registry import decision_row, now, promote, promoted_model, store_decisions
from tasks.synthetic import generate_problems
from warehouse.connection import commit, connect, rollback
from warehouse.lock import writer_lock
from warehouse.writes import insert_new

DEPLOYMENT_NAME = "nightly"


class NoDeployment(UserError, LookupError):
    """`prmforge serve` found no deployment to run: `prmforge schedule` creates it."""


@dataclass
class NightlySummary:
    run_id: str
    seed: int
    status: str  # promoted, kept, or stopped at <stage>
    decisions: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, decision, reason)
    dataset_version: int | None = None
    candidate_model_id: str | None = None
    promoted_model_id: str | None = None


@task(name="choose-seed", cache_policy=NO_CACHE)
def choose_seed(warehouse: WarehouseConfig, config: NightlyConfig) -> tuple[int, str]:
    """The next seed whose synthetic problems the warehouse has never seen."""
    with reading(warehouse) as connection:
        configs = [row[0] for row in connection.execute("SELECT config_json FROM runs WHERE flow = 'generate'").fetchall()]
        known = {row[0] for row in connection.execute("SELECT problem_id FROM problems").fetchall()}

    def problem_ids(seed: int) -> list[str]:
        return [problem.problem_id for problem in generate_problems(config.problems, seed)]

    return next_seed(seeds_of_generate_runs(configs), config.first_seed, known, problem_ids)


@task(name="record-decisions", cache_policy=NO_CACHE)
def record(
    warehouse: WarehouseConfig, run_id: str, decisions: list[tuple], promote_model: str | None = None,
    run_row: dict | None = None,
) -> None:
    """Store decisions (and the promotion they make) as one snapshot. A promotion takes its turn with
    other machines' registrations and promotions on a shared catalog."""
    promoting = model_version_lock(warehouse) if promote_model is not None else nullcontext()
    with writer_lock(warehouse.data_dir, wait_seconds=60), promoting:
        connection = connect(warehouse)
        try:
            connection.execute("BEGIN")
            store_decisions(connection, [decision_row(run_id, *decision) for decision in decisions])
            if promote_model is not None:
                promote(connection, promote_model)
            if run_row is not None:
                connection.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
                insert_new(connection, RUNS, RUNS.frame([run_row]))
            stages = ", ".join(dict.fromkeys(decision[0] for decision in decisions))
            commit(connection, f"run {run_id}: nightly {stages}")
        except BaseException:
            rollback(connection)
            raise
        finally:
            connection.close()


def generate_config(config: NightlyConfig, seed: int) -> GenerateConfig:
    return GenerateConfig(
        problems=config.problems, samples=config.samples, rollouts=config.rollouts, seed=seed, policy=config.policy,
        labeler=config.labeler, max_new_tokens=config.max_new_tokens, test_fraction=config.test_fraction,
    )


def train_config(config: NightlyConfig, dataset_version: int, kind: str = "prm") -> PRMTrainConfig:
    return PRMTrainConfig(
        dataset_version=dataset_version, base=config.base, kind=kind, label_kind=config.label_kind,
        epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
    )


@flow(name="prmforge-nightly", log_prints=False)
def nightly_flow(config: NightlyConfig, warehouse: WarehouseConfig) -> NightlySummary:
    seed, seed_reason = choose_seed(warehouse, config)
    run_id = content_id("run", "nightly", config.model_dump_json(), seed)
    summary = NightlySummary(run_id, seed, "stopped at seeds")

    def decide(
        stage: str, decision: str, reason: str, promote_model: str | None = None, final: bool = False,
        status: str = "completed", evidence: dict | None = None,
    ) -> None:
        announce(f"nightly {stage}: {decision} ({reason})")
        summary.decisions.append((stage, decision, reason))
        run_row = None
        if final:
            run_row = {
                "run_id": run_id, "flow": "nightly", "config_json": json.dumps({**config.model_dump(), "seed": seed}),
                "policy": config.policy, "finished_at": now(), "status": status,
            }
        record(warehouse, run_id, [(stage, decision, reason, evidence)], promote_model, run_row)

    @contextmanager
    def failure_recorded(stage: str) -> Iterator[None]:
        """A stage that raises ends the night with a recorded `failed` decision, then the error goes on."""
        try:
            yield
        except GateFailed:
            raise  # a decision of its own: stop, nothing published
        except Exception as error:
            summary.status = f"failed at {stage}"
            try:
                decide(stage, "failed", f"{type(error).__name__}: {_first_line(error)}", final=True, status="failed")
            except Exception as unrecorded:  # a full disk may refuse this too; the first error matters more
                announce(f"nightly {stage}: the failure could not be recorded ({_first_line(unrecorded)})")
            raise

    decide("seeds", f"seed {seed}", seed_reason)
    try:
        with failure_recorded("generate"):
            generated = generate_flow(generate_config(config, seed), warehouse)
    except GateFailed as failure:
        summary.status = "stopped at generate"
        decide("generate", "stop", f"quality gates failed, nothing published: {failure}", final=True)
        return summary
    summary.dataset_version = generated.dataset_version
    if generated.status != "completed" or generated.dataset_version is None:
        summary.status = "stopped at generate"
        decide("generate", "stop", f"generate run {generated.run_id} {generated.status}: no new dataset", final=True)
        return summary
    if generated.new_labels < config.min_new_labels:
        summary.status = "stopped at generate"
        decide("generate", "stop", f"only {generated.new_labels} new labelled steps (< {config.min_new_labels})", final=True)
        return summary
    decide(
        "generate", "continue",
        f"{generated.new_labels} new labelled steps from {generated.problems} problems passed the gates; "
        f"dataset v{generated.dataset_version} has {generated.dataset_rows} solutions",
    )

    with failure_recorded("train"):
        trained = train_flow(train_config(config, generated.dataset_version), warehouse)
    summary.candidate_model_id = trained.model_id
    decide(
        "train", f"model v{trained.version}",
        f"{trained.status} on dataset v{generated.dataset_version}: final loss {trained.metrics.get('final_loss')}, "
        f"held-out step accuracy {trained.metrics.get('test_accuracy')}",
    )
    orm = None
    if config.orm_baseline:
        with failure_recorded("train"):
            orm = train_flow(train_config(config, generated.dataset_version, kind="orm"), warehouse)
        decide("train", f"orm v{orm.version}", f"{orm.status}: the ORM baseline for the Best-of-N comparison")

    with failure_recorded("evaluate"):
        with reading(warehouse) as connection:
            incumbent = promoted_model(connection)
        report_dir = Path(config.report_dir) if config.report_dir else None
        evaluation = EvaluateConfig(bon_policy=config.policy, bon_samples=config.promotion_n, bon_seed=config.bon_seed)
        candidate = evaluate_flow(
            trained.model_id, warehouse, evaluation, dataset_version=generated.dataset_version,
            orm=orm.model_id if orm else None, report_dir=report_dir,
        )
        measured = f"candidate v{trained.version} F1 {_shown(candidate.f1)}"
        held = None
        if incumbent is not None and incumbent.model_id != trained.model_id:
            # The same fresh solutions (the generation cache serves the second sampling), so the
            # two models are compared problem by problem.
            held = evaluate_flow(incumbent.model_id, warehouse, evaluation, dataset_version=generated.dataset_version)
            measured += f", promoted v{incumbent.version} F1 {_shown(held.f1)}"
    decide("evaluate", "measured", f"{measured} on {candidate.evaluation_set} ({candidate.threshold_source})")

    if incumbent is not None and incumbent.model_id == trained.model_id:
        decision, reason, evidence = "keep", "the candidate is already the promoted model", None
    else:
        decision, reason, evidence = _promotion(config, candidate, held, incumbent, orm)
    chosen = trained.model_id if decision == "promote" else None
    summary.promoted_model_id = chosen or (incumbent.model_id if incumbent else None)
    summary.status = "promoted" if chosen else "kept"
    decide("promote", decision, reason, promote_model=chosen, final=True, evidence=evidence)
    return summary


def _promotion(config: NightlyConfig, candidate, held, incumbent, orm) -> tuple[str, str, dict | None]:
    """Promote on evidence: the candidate's Best-of-N accuracy per held-out problem against the
    promoted model's on the same solutions or, with none promoted yet, against random choice and
    the ORM baseline (when the night trained one)."""
    selector, n = config.promotion_selector, config.promotion_n
    metric = f"{selector} Best-of-{n} accuracy"

    def values(summary, method: str) -> list[float] | None:
        point = next((p for p in summary.best_of_n.get(method, []) if p.n == n), None)
        return list(point.values) if point is not None else None

    mine = values(candidate, selector)
    if mine is None:
        return "keep", f"no Best-of-{n} measurement of {selector} on the held-out problems", None
    if held is not None:
        baselines = {f"promoted v{incumbent.version}": values(held, selector)}
    else:
        baselines = {"random": values(candidate, "random")}
        if orm is not None:
            baselines["orm"] = values(candidate, "orm")
    decision, reason, deciding, interval = promotion_on_evidence(mine, baselines, metric)
    if incumbent is None:
        reason = f"no model is promoted yet; {reason}"
    evidence = None if interval is None else {
        "metric": metric, "compared_with": deciding, "difference": interval.estimate,
        "difference_low": interval.low, "difference_high": interval.high, "problems": interval.units,
    }
    return decision, reason, evidence


def _shown(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def nightly_deployment(cron: str, config: NightlyConfig, warehouse: WarehouseConfig, name: str = DEPLOYMENT_NAME):
    """A Prefect deployment of the nightly flow on `cron`, with absolute paths so it runs from anywhere."""
    absolute = warehouse.model_copy(update={"data_dir": warehouse.data_dir.resolve()})
    return nightly_flow.to_deployment(
        name=name,
        cron=cron,
        parameters={"config": config.model_dump(mode="json"), "warehouse": absolute.model_dump(mode="json")},
        description="prmforge nightly: fresh problems, gated data, retrain, compare, promote only if better.",
        tags=["prmforge"],
    )


def served_deployment(name: str = DEPLOYMENT_NAME):
    """The deployment `prmforge schedule` stored, rebuilt for Prefect's runner from its own schedules
    and parameters: `prefect.serve` registers what it serves again, and that must not undo schedule."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.exceptions import ObjectNotFound

    full_name = f"{nightly_flow.name}/{name}"
    with get_client(sync_client=True) as client:
        try:
            stored = client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            raise NoDeployment(
                f"no deployment {full_name} to serve: create it first with `prmforge schedule --cron '0 2 * * *'`"
                + ("" if name == DEPLOYMENT_NAME else f" --name {name}")
            ) from None
    schedules = [
        DeploymentScheduleCreate(
            schedule=stored_schedule.schedule, active=stored_schedule.active, parameters=stored_schedule.parameters,
            max_scheduled_runs=stored_schedule.max_scheduled_runs, slug=stored_schedule.slug,
        )
        for stored_schedule in stored.schedules
    ]
    return nightly_flow.to_deployment(
        name=name, schedules=schedules, parameters=stored.parameters, description=stored.description,
        tags=stored.tags,
    )
