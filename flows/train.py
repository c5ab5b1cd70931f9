"""The train flow: a dataset version's train split -> a PRM (or ORM baseline) -> the models table.

The model trains in a work folder beside the registered ones, with a resumable checkpoint there.
Registration moves it to data/models/v<N>/, writes its model card and commits one snapshot.
Under `torchrun` or `accelerate launch` every process trains its share; the main one alone reads the
catalog, runs the Prefect flow, saves and registers the model (tasks/prm/processes.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import announce, stage
from schemas.config import WarehouseConfig
from schemas.tables import RUNS
from tasks.ids import content_id
from tasks.prm import processes
from tasks.prm.config import PRMTrainConfig
from tasks.prm.data import StepwiseExample, originals, read_split
from tasks.prm.registry import DatasetRef, ModelRef, find_dataset, list_models, next_version, now, register_model
from warehouse.connection import commit, connect, rollback
from warehouse.lock import shared_catalog_lock, writer_lock
from warehouse.writes import insert_new


# Registering or promoting a model takes seconds; one waits this long for another machine's.
MODEL_LOCK_WAIT_S = 60.0


def model_version_lock(warehouse: WarehouseConfig):
    """A model's version number counts the versions before it, and promotion rewrites every model's
    flag. Machines sharing a PostgreSQL catalog could number or promote at once, so there they take
    turns (a local catalog's writer lock already makes them). Taken before the transaction begins,
    so that it reads what the machine before it committed."""
    return shared_catalog_lock(warehouse.catalog, "model version", activity="registering or promoting a model",
                               wait_seconds=MODEL_LOCK_WAIT_S)


@contextmanager
def reading(warehouse: WarehouseConfig) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for reads, after the schema is brought up to date (a warehouse made before the
    models tables existed gains them here, under the writer lock)."""
    with writer_lock(warehouse.data_dir, wait_seconds=60):
        connect(warehouse).close()
    connection = connect(warehouse, read_only=True)
    try:
        yield connection
    finally:
        connection.close()


@dataclass
class TrainSummary:
    model_id: str
    status: str  # "completed" or "already done"
    version: int | None = None
    path: str | None = None
    dataset_version: int | None = None
    metrics: dict = field(default_factory=dict)
    run_id: str = ""


def model_id_for(config: PRMTrainConfig, dataset_id: str, base: Path) -> str:
    """The same settings on the same dataset from the same base always give the same model id."""
    return content_id("model", config.training_fingerprint(), dataset_id, str(base.resolve()))


def work_dir(warehouse: WarehouseConfig, model_id: str) -> Path:
    return warehouse.data_dir / "models" / f".train-{model_id[:16]}"


def held_out_metrics(model_path: Path, examples: list[StepwiseExample], kind: str) -> dict:
    """Step accuracy at 0.5 on the test split: every step for a PRM, the outcome for an ORM."""
    from tasks.prm.score import PRMScorer

    rows = originals(examples)
    if not rows:
        return {"test_solutions": 0}
    scores = PRMScorer(model_path).score_many([(row.prompt, row.steps) for row in rows])
    if kind == "orm":
        hits = [(score.last >= 0.5) == row.is_correct for row, score in zip(rows, scores, strict=True)]
    else:
        hits = [
            (value >= 0.5) == label
            for row, score in zip(rows, scores, strict=True)
            for value, label in zip(score.per_step, row.labels, strict=True)
        ]
    return {"test_solutions": len(rows), "test_accuracy": round(sum(hits) / len(hits), 4), "test_targets": len(hits)}


@task(name="train-prm", cache_policy=NO_CACHE)
def fit(config: PRMTrainConfig, base: Path, dataset: DatasetRef, folder: Path, resume: bool) -> tuple[Path, dict]:
    """Train in `folder` and save the HF directory to `folder/model`; returns it with the metrics."""
    from tasks.policies.transformers_policy import quiet_transformers

    if config.kind == "implicit":
        return _fit_implicit(config, base, dataset, folder, originals(read_split(dataset.path, "train")))
    model, tokenizer, metrics = train_weights(config, base, dataset, folder, resume, show_progress=True)
    output = folder / "model"
    with quiet_transformers():
        model.to("cpu").save_pretrained(output)
    tokenizer.save_pretrained(output)
    announce("held-out step accuracy")
    result = metrics.as_dict() | held_out_metrics(output, read_split(dataset.path, "test"), config.kind)
    return output, result


def train_weights(config: PRMTrainConfig, base: Path, dataset: DatasetRef, folder: Path, resume: bool,
                  show_progress: bool):
    """What every process of a run does: read the train split from the dataset's files (not the
    catalog) and train on its share of each batch. Returns the model, its tokenizer and the metrics."""
    from tasks.prm.model import device_for, load_for_training, max_positions, set_cpu_threads
    from tasks.prm.train import total_steps, train_loop, training_examples

    set_cpu_threads()
    train = read_split(dataset.path, "train")
    if not config.variants:
        train = originals(train)
    model, tokenizer = load_for_training(base, config.label_kind, config.kind, config.seed, config.dropout, config.lm_weight)
    limit = config.max_length or max_positions(model.config)
    examples, skipped = training_examples(tokenizer, train, config.kind, config.label_kind, limit)
    steps = total_steps(len(examples), config.batch_size, config.epochs, config.steps) if examples else 0
    description = f"training the {config.kind.upper()} ({config.label_kind} labels, {len(examples)} solutions)"
    with stage(description, steps) if show_progress else nullcontext(lambda count: None) as advance:
        metrics = train_loop(
            model, examples, config, tokenizer.pad_token_id, device_for(), folder, resume,
            progress=lambda step, loss: advance(1),
        )
    metrics.skipped = len(skipped)
    for item in skipped:
        reason = item.reason.split(":")[0]
        metrics.skip_reasons[reason] = metrics.skip_reasons.get(reason, 0) + 1
    return model, tokenizer, metrics


def _fit_implicit(config: PRMTrainConfig, base: Path, dataset: DatasetRef, folder: Path,
                  train: list[StepwiseExample]) -> tuple[Path, dict]:
    """The implicit PRM: outcome labels only, through the log-likelihood ratio to the base."""
    from tasks.policies.transformers_policy import quiet_transformers
    from tasks.prm.implicit import train_implicit
    from tasks.prm.model import device_for
    from tasks.prm.train import total_steps

    steps = total_steps(len(train), config.batch_size, config.epochs, config.steps)
    announce(f"training the implicit PRM ({len(train)} solutions, outcome labels, {steps} steps)")
    model, tokenizer, metrics = train_implicit(
        base, train, steps, config.batch_size, config.learning_rate, config.beta, config.seed, device_for(),
    )
    output = folder / "model"
    with quiet_transformers():
        model.to("cpu").save_pretrained(output)
    tokenizer.save_pretrained(output)
    announce("held-out step accuracy")
    result = {"examples": metrics.examples, "steps": metrics.steps, "first_loss": metrics.first_loss,
              "final_loss": metrics.final_loss, "seconds": metrics.seconds}
    return output, result | held_out_metrics(output, read_split(dataset.path, "test"), config.kind)


@task(name="register-model", cache_policy=NO_CACHE)
def register(
    warehouse: WarehouseConfig, config: PRMTrainConfig, model_id: str, run_id: str, trained: Path,
    base: Path, dataset: DatasetRef, metrics: dict, started: float,
) -> TrainSummary:
    """Move the model to models/v<N>, write its card, and commit the model and run rows as one snapshot."""
    from tasks.prm.train import model_card

    announce("register model")
    with writer_lock(warehouse.data_dir, wait_seconds=60), model_version_lock(warehouse):
        connection = connect(warehouse)
        final: Path | None = None
        try:
            connection.execute("BEGIN")
            version = next_version(connection)
            final = warehouse.data_dir / "models" / f"v{version}"
            if final.exists():
                shutil.rmtree(final)  # left by a run that died before its commit
            trained.rename(final)
            (final / "README.md").write_text(
                model_card(model_id, version, config, str(base), dataset.version, dataset.snapshot_id, metrics)
            )
            register_model(connection, ModelRef(
                model_id=model_id, version=version, path=str(final), base=str(base), dataset_version=dataset.version,
                dataset_snapshot=dataset.snapshot_id, label_kind=config.label_kind, kind=config.kind, metrics=metrics,
            ), run_id)
            insert_new(connection, RUNS, RUNS.frame([{
                "run_id": run_id, "flow": "train", "config_json": config.model_dump_json(), "policy": None,
                "finished_at": now(), "status": "completed", "wall_seconds": time.perf_counter() - started,
            }]))
            commit(connection, f"run {run_id}: train {config.kind} v{version}")
        except BaseException:
            rollback(connection)
            if final is not None and final.exists() and not trained.exists():
                final.rename(trained)  # keep the weights for a rerun with --resume
            raise
        finally:
            connection.close()
    return TrainSummary(model_id, "completed", version, str(final), dataset.version, metrics, run_id)


@dataclass(frozen=True)
class RunPlan:
    """What the main process reads from the warehouse before training, and hands every process."""

    dataset: DatasetRef
    base: Path
    model_id: str
    run_id: str
    known: ModelRef | None  # this model is registered already
    folder: Path  # where it trains, ready


def plan_run(config: PRMTrainConfig, warehouse: WarehouseConfig, resume: bool) -> RunPlan:
    """The dataset, the model id and whether it is registered; the work folder made ready for it."""
    from tasks.prm.model import resolve_base

    with reading(warehouse) as connection:
        dataset = find_dataset(connection, config.dataset_version)
        base = resolve_base(config.base)
        model_id = model_id_for(config, dataset.dataset_id, base)
        known = next((model for model in list_models(connection) if model.model_id == model_id), None)
    folder = work_dir(warehouse, model_id)
    if known is None:
        if folder.exists() and not resume:
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
    return RunPlan(dataset, base, model_id, content_id("run", "train", model_id), known, folder)


def already_done(plan: RunPlan) -> TrainSummary:
    known = plan.known
    return TrainSummary(plan.model_id, "already done", known.version, known.path, known.dataset_version,
                        known.metrics or {}, plan.run_id)


@flow(name="prmforge-train", log_prints=False)
def train_flow(config: PRMTrainConfig, warehouse: WarehouseConfig, resume: bool = False) -> TrainSummary:
    """The main process's run: under several processes it hands them the plan and trains beside them."""
    from tasks.prm.model import device_for

    started = time.perf_counter()
    plan = processes.from_main(lambda: plan_run(config, warehouse, resume), device_for())
    if plan.known is not None:
        return already_done(plan)
    trained, metrics = fit(config, plan.base, plan.dataset, plan.folder, resume)
    summary = register(warehouse, config, plan.model_id, plan.run_id, trained, plan.base, plan.dataset, metrics, started)
    shutil.rmtree(plan.folder, ignore_errors=True)  # the checkpoint is not needed once registered
    return summary


def train_share(config: PRMTrainConfig, resume: bool) -> TrainSummary:
    """Another process's run: the main process's plan, then this process's share of the training.
    No catalog, no Prefect run, no model directory: those happen once, on the main process."""
    from tasks.prm.model import device_for

    plan = processes.from_main(lambda: None, device_for())
    if plan.known is not None:
        return already_done(plan)
    train_weights(config, plan.base, plan.dataset, plan.folder, resume, show_progress=False)
    return TrainSummary(plan.model_id, "trained its share", dataset_version=plan.dataset.version, run_id=plan.run_id)


def train(config: PRMTrainConfig, warehouse: WarehouseConfig, resume: bool = False) -> TrainSummary:
    """`prmforge train` in each of its processes: one, or N under `torchrun` or `accelerate launch`."""
    from tasks.prm.model import device_for
    from tasks.prm.trainer import check_processes

    check_processes(config, device_for(), processes.count())
    try:
        return train_flow(config, warehouse, resume) if processes.is_main() else train_share(config, resume)
    finally:
        processes.leave()
