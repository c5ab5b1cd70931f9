"""The generate flow: seed problems -> rollout tree -> Monte Carlo labels -> gated commit -> dataset.

Everything a run writes commits after every quality gate has passed, in DuckLake snapshots whose
messages name the run: one snapshot on a local catalog; on a PostgreSQL catalog, where other
machines commit meanwhile, the rows first and then the dataset read from exactly their snapshot.
A failed gate publishes nothing but its own results.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import announce, stage
from schemas import expectations
from schemas.config import DatasetConfig, GenerateConfig, WarehouseConfig
from schemas.records import PolicyUsage, Problem, SamplingParams
from schemas.tables import (
    CONSENSUS, DATASETS, DQ_RESULTS, NODES, POLICY_USAGE, PREFERENCE_PAIRS, PROBLEMS, QUARANTINE, ROLLOUTS,
    RUNS, STEP_LABELS, VERDICTS,
)
from tasks import frames
from tasks.augment import hnc_variants
from tasks.consensus import decisions_frame, labeler_sources, run_consensus
from tasks.dataset import stepwise_rows, with_check_columns
from tasks.labelers.search import balance_solutions
from tasks.preferences import export_pairs, preference_pairs
from tasks.gates import GateFailed, GateResult, enforce, run_suite
from tasks.ids import content_id
from tasks.ingest import IngestResult, read_seed_file
from tasks.labelers.base import LabelRequest, LabelResult
from tasks.labelers.registry import get_labeler, labeler_names
from tasks.policies.cache import CachedPolicy
from tasks.policies.timeout import TimeoutPolicy
from tasks.policies.registry import load_policy
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, sample_solutions
from tasks.verification import load_verifiers, solution_paths, verdicts_frame, verify_tree
from warehouse.connection import LAKE, commit, connect, current_snapshot, rollback
from warehouse.lock import catalog_lock, writer_lock
from warehouse.writes import insert_new, read_table


@dataclass
class GenerateSummary:
    run_id: str
    status: str  # "completed", "already done" or "failed"
    problems: int = 0
    quarantined: int = 0
    solutions: int = 0
    solved: int = 0
    new_nodes: int = 0
    new_labels: int = 0
    new_rollouts: int = 0
    snapshot_id: int | None = None
    dataset_version: int | None = None
    dataset_path: str | None = None
    dataset_rows: int = 0
    skipped_solutions: int = 0
    new_verdicts: int = 0
    consensus_kept: int | None = None
    consensus_decided: int = 0
    new_pairs: int = 0
    policy_seconds: float = 0.0
    generated_tokens: int = 0
    wall_seconds: float = 0.0

    @property
    def solve_rate(self) -> float:
        return self.solved / self.solutions if self.solutions else 0.0


def run_id_for(config: GenerateConfig) -> str:
    """The same inputs (config and seed file content) always give the same run id."""
    seeds_digest = ""
    if config.seeds_file is not None and Path(config.seeds_file).is_file():
        seeds_digest = hashlib.sha256(Path(config.seeds_file).read_bytes()).hexdigest()
    return content_id("run", "generate", config.model_dump_json(), seeds_digest)


def sampling_params(config: GenerateConfig, purpose: str) -> SamplingParams:
    # Solutions and rollouts draw from different seeds so that a rollout never replays its sample.
    offset = {"solutions": 0, "rollouts": 1}[purpose]
    return SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed * 2 + offset,
    )


@task(name="load-problems", cache_policy=NO_CACHE)
def load_problems(config: GenerateConfig) -> IngestResult:
    announce("ingest")
    if config.seeds_file is None:
        loaded = IngestResult(generate_problems(config.problems, config.seed, config.min_steps, config.max_steps), [])
    else:
        result = read_seed_file(config.seeds_file)
        loaded = IngestResult(result.problems[: config.problems], result.quarantined)
    if config.shard is None:
        return loaded
    index, count = map(int, config.shard.split("/"))
    return IngestResult([p for p in loaded.problems if in_shard(p.problem_id, index, count)], loaded.quarantined)


def in_shard(problem_id: str, index: int, count: int) -> bool:
    """Shards split problems by id, so every worker agrees without talking to the others."""
    return int(problem_id[:8], 16) % count == index


_cached_policies: dict[tuple[str, Path], CachedPolicy] = {}


def policy_for(config: GenerateConfig, cache_dir: Path) -> CachedPolicy:
    """The run's policy behind a durable request cache: a killed or failed run keeps every batch
    it finished, and a rerun resumes from there instead of sampling again."""
    key = (config.policy, cache_dir)
    if key not in _cached_policies:
        bounded = TimeoutPolicy(load_policy(config.policy), config.policy_timeout_s)
        _cached_policies[key] = CachedPolicy(bounded, cache_dir / "generations.sqlite")
    return _cached_policies[key]


@task(name="sample-solutions", cache_policy=NO_CACHE)
def sample_tree(config: GenerateConfig, problems: list[Problem], cache_dir: Path):
    policy = policy_for(config, cache_dir)
    with stage("sampling solutions", len(problems)) as advance:
        solutions, usage = sample_solutions(
            policy, problems, config.samples, sampling_params(config, "solutions"),
            config.step_boundary, progress=advance,
        )
    return solutions, build_tree(solutions), usage


@task(name="label-steps", cache_policy=NO_CACHE)
def label_steps(config: GenerateConfig, request: LabelRequest, cache_dir: Path) -> LabelResult:
    policy = policy_for(config, cache_dir)
    labeler = get_labeler(config.labeler)
    with stage(f"labelling steps ({config.labeler}, k={config.rollouts})", len(request.to_label)) as advance:
        return labeler.label(policy, request, progress=advance)


@task(name="verify-steps", cache_policy=NO_CACHE)
def verify_steps(config: GenerateConfig, request: LabelRequest) -> dict:
    """Every step of the tree through each configured verifier: node id -> verdicts."""
    if not config.verifiers:
        return {}
    announce(f"verifying steps ({', '.join(config.verifiers)})")
    questions = {problem_id: problem.question for problem_id, problem in request.problems.items()}
    return verify_tree(request.nodes, questions, load_verifiers(config.verifiers), config.verify_budget_ms)


@task(name="consensus", cache_policy=NO_CACHE)
def decide_consensus(config: GenerateConfig, request: LabelRequest, labels_by_source: dict, verdicts: dict,
                     run_id: str):
    """Keep the solutions the sources (labellers by name, then verifiers) agree on; every dropped one
    records who disagreed. mc anchors mc_and_verifiers when it votes, else this run's labeller."""
    announce(f"consensus ({config.consensus}: {', '.join([*labels_by_source, *config.verifiers])})")
    paths = solution_paths(request.nodes)
    anchor = "mc" if "mc" in labels_by_source else config.labeler
    outcome = run_consensus(paths, labels_by_source, verdicts, config.verifiers, config.consensus, anchor=anchor)
    problem_of = {solution: path[0].problem_id for solution, path in paths.items()}
    return decisions_frame(outcome.decisions, problem_of, run_id), frames.labels_frame(outcome.labels, run_id)


@task(name="quality-gates", cache_policy=NO_CACHE)
def check_gates(new: dict[str, pl.DataFrame], known_nodes: set[str], known_problems: set[str]) -> list[GateResult]:
    announce("quality gates")
    node_ids = known_nodes | set(new["nodes"]["node_id"])
    problem_ids = known_problems | set(new["problems"]["problem_id"])
    results = run_suite("problems", new["problems"], expectations.problems_suite())
    results += run_suite("nodes", new["nodes"], expectations.nodes_suite(node_ids, problem_ids))
    results += run_suite("step_labels", new["step_labels"], expectations.step_labels_suite(node_ids))
    results += run_suite("rollouts", new["rollouts"], expectations.rollouts_suite(node_ids))
    results += run_suite("verdicts", new["verdicts"], expectations.verdicts_suite(node_ids))
    results += run_suite("consensus", new["consensus"], expectations.consensus_suite())
    return results


def _usage_row(run_id: str, stage: str, labeler: str | None, policy: str, usage: PolicyUsage) -> dict:
    return {
        "usage_id": content_id("usage", run_id, stage), "run_id": run_id, "stage": stage, "labeler": labeler,
        "policy": policy, "prompts": usage.prompts, "generated_tokens": usage.generated_tokens,
        "seconds": usage.seconds, "calls": usage.calls,
    }


def _forget_failed_attempt(connection, run_id: str) -> None:
    """A rerun that succeeds replaces the failed attempt's run row. Deleting only when there is
    one keeps a normal publish insert-only, so concurrent shard workers never conflict."""
    failed = connection.execute("SELECT count(*) FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
    if failed:
        connection.execute("DELETE FROM runs WHERE run_id = ?", [run_id])


def _stored_labels(connection, labeler: str, nodes: dict) -> dict:
    """Labels this labeller stored earlier for the tree's nodes, as StepLabel records by node id."""
    from schemas.records import StepLabel

    stored = read_table(connection, STEP_LABELS, f"labeler = '{labeler}'")
    fields = [name for name in StepLabel.__dataclass_fields__]
    return {
        row["node_id"]: StepLabel(**{name: row[name] for name in fields})
        for row in stored.filter(pl.col("node_id").is_in(list(nodes))).iter_rows(named=True)
    }


def _ids(connection, table, column: str) -> set[str]:
    return {row[0] for row in connection.execute(f"SELECT {column} FROM {table}").fetchall()}


def _record_failure(connection, run_id: str, config: GenerateConfig, results: list[GateResult]) -> None:
    """Keep the gate results and a failed run row; no data of the run is published."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    connection.execute("BEGIN")
    insert_new(connection, DQ_RESULTS, DQ_RESULTS.frame(frames.gate_rows(results, run_id, now)))
    _forget_failed_attempt(connection, run_id)
    insert_new(connection, RUNS, RUNS.frame([{
        "run_id": run_id, "flow": "generate", "config_json": config.model_dump_json(),
        "policy": config.policy, "finished_at": now, "status": "failed",
    }]))
    commit(connection, f"run {run_id}: generate failed its quality gates")


def _insert_rows(connection, new: dict[str, pl.DataFrame], summary: GenerateSummary) -> int:
    """Insert the run's rows that the warehouse lacks; returns how many problems were new."""
    summary.new_nodes = insert_new(connection, NODES, new["nodes"])
    summary.new_labels = insert_new(connection, STEP_LABELS, new["step_labels"])
    summary.new_rollouts = insert_new(connection, ROLLOUTS, new["rollouts"])
    summary.new_verdicts = insert_new(connection, VERDICTS, new["verdicts"])
    insert_new(connection, CONSENSUS, new["consensus"])
    insert_new(connection, POLICY_USAGE, new["policy_usage"])
    new_problems = insert_new(connection, PROBLEMS, new["problems"])
    insert_new(connection, QUARANTINE, new["quarantine"])
    return new_problems


def _stored_by_earlier_attempt(connection, run_id: str) -> bool:
    """Whether this run's rows are already stored: on a PostgreSQL catalog they commit before its
    dataset, so a run killed in between finds them on its rerun and still builds its dataset."""
    return any(
        connection.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id]).fetchone()[0]
        for table in ("problems", "nodes", "step_labels")
    )


def _snapshot_of(connection, message: str) -> int:
    """The committed snapshot with this commit message; the latest, should a resumed run repeat it.
    Only the run's holder of the run lock commits messages that name the run."""
    found = connection.execute(
        f"SELECT max(snapshot_id) FROM {LAKE}.snapshots() WHERE commit_message = ?", [message]
    ).fetchone()[0]
    if found is None:
        raise RuntimeError(f"no snapshot with the commit message {message!r}")
    return int(found)


def _after_rows_committed(snapshot_id: int) -> None:
    """Runs between the two commits of a dataset run on a PostgreSQL catalog, where another machine
    may commit; tests put another worker's commit here."""


class _Transaction:
    """An open transaction and the dataset export staged in it: the export moves into place just
    before the commit, and is removed if the transaction rolls back."""

    def __init__(self, connection):
        self.connection = connection
        self.staged: tuple[Path, Path] | None = None  # (staging folder, final folder)

    def commit(self, message: str) -> None:
        if self.staged is not None:
            staged, final = self.staged
            if final.exists():
                shutil.rmtree(final)  # left by a run that died before its commit
            staged.rename(final)
        commit(self.connection, message)

    def discard(self) -> None:
        if self.staged is not None and self.staged[0].exists():
            shutil.rmtree(self.staged[0])


@contextlib.contextmanager
def _transaction(connection) -> Iterator[_Transaction]:
    """BEGIN; the block ends with `.commit(message)`; an error rolls back and drops the staged export."""
    transaction = _Transaction(connection)
    connection.execute("BEGIN")
    try:
        yield transaction
    except BaseException:
        rollback(connection)
        transaction.discard()
        raise


def _record_completion(connection, run_id: str, run_row: dict, gate_results: list[GateResult],
                       summary: GenerateSummary) -> None:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    insert_new(connection, DQ_RESULTS, DQ_RESULTS.frame(frames.gate_rows(gate_results, run_id, now)))
    _forget_failed_attempt(connection, run_id)
    insert_new(connection, RUNS, RUNS.frame([{**run_row, "finished_at": now, "status": "completed",
                                               "n_nodes": summary.new_nodes, "n_labels": summary.new_labels}]))


@task(name="publish", cache_policy=NO_CACHE)
def publish(
    connection,
    warehouse: WarehouseConfig,
    config: GenerateConfig,
    run_id: str,
    new: dict[str, pl.DataFrame],
    gate_results: list[GateResult],
    run_row: dict,
    summary: GenerateSummary,
) -> None:
    """Insert the run's rows, build and gate the dataset, and commit. The dataset is pinned to the
    snapshot it was read from, so `AT (VERSION => snapshot_id)` reproduces it exactly.

    A local catalog's writer lock keeps every other writer out, so there it all commits as one
    snapshot (the one after the current) and the dataset reads the transaction's own view. On a
    PostgreSQL catalog another machine may commit at any moment, so a commit cannot know its
    snapshot in advance: the rows commit first, the dataset is read from exactly their snapshot
    and commits in a second one with the run's row (the run is completed only then). The dataset
    is built and gated in the rows' transaction too, so that a dataset gate the run's rows fail
    publishes nothing; only rows other machines commit in between can fail it after that.
    """
    announce("publish")
    concurrent = warehouse.catalog.startswith("postgres:")
    rows_message = f"run {run_id}: generate"
    with _transaction(connection) as transaction:
        snapshot_id = current_snapshot(connection) + 1  # the snapshot this commit creates on a local catalog
        new_problems = _insert_rows(connection, new, summary)
        building = config.publish_dataset and bool(
            summary.new_nodes or summary.new_labels or new_problems or _stored_by_earlier_attempt(connection, run_id)
        )
        built = _BuiltDataset(None, [])
        if building:
            built = _build_dataset(connection, warehouse, config.dataset_config(), run_id, snapshot_id, summary,
                                   export=not concurrent)
            transaction.staged = built.staged
            enforce(built.gates)
        two_commits = concurrent and built.rows > 0
        if not two_commits:
            _record_completion(connection, run_id, run_row, gate_results + built.gates, summary)
        transaction.commit(rows_message)
    summary.snapshot_id = _snapshot_of(connection, rows_message)
    if not two_commits:
        if summary.dataset_version is not None and summary.snapshot_id != snapshot_id:
            raise RuntimeError(f"dataset pinned to snapshot {snapshot_id}, but the run committed {summary.snapshot_id}")
        return
    snapshot_id = summary.snapshot_id
    _after_rows_committed(snapshot_id)
    with _transaction(connection) as transaction:
        built = _build_dataset(connection, warehouse, config.dataset_config(), run_id, snapshot_id, summary,
                               read_at=snapshot_id)
        transaction.staged = built.staged
        enforce(built.gates)
        _record_completion(connection, run_id, run_row, gate_results + built.gates, summary)
        version = f" v{summary.dataset_version}" if summary.dataset_version is not None else ""
        transaction.commit(f"run {run_id}: generate dataset{version} from snapshot {snapshot_id}")


@dataclass
class _BuiltDataset:
    staged: tuple[Path, Path] | None  # (staging folder, final folder) of the Parquet export
    gates: list[GateResult]
    rows: int = 0  # solutions it exports (a trial build stages nothing, but counts them)


def _build_dataset(connection, warehouse: WarehouseConfig, config: DatasetConfig, run_id: str,
                   snapshot_id: int, summary: GenerateSummary, read_at: int | None = None,
                   export: bool = True) -> _BuiltDataset:
    """Read the warehouse (at snapshot `read_at`, or as the open transaction sees it), gate the
    dataset, and unless `export` is False (a trial build, only for its gates) stage its Parquet
    export and its row, pinned to `snapshot_id`."""
    announce("dataset build" if export else "dataset build (a trial, for its gates)")
    problems = read_table(connection, PROBLEMS, at_snapshot=read_at)
    nodes = read_table(connection, NODES, at_snapshot=read_at)
    labels = read_table(connection, STEP_LABELS, at_snapshot=read_at)
    dataset, skipped = stepwise_rows(problems, nodes, labels, config.labeler, config.test_fraction)
    # Gate the rows as built before anything is derived from them, then the final export again.
    base_results = run_suite("dataset", with_check_columns(dataset), expectations.dataset_suite())
    if not all(result.success for result in base_results):
        return _BuiltDataset(None, base_results)
    excluded = dataset.clear().with_columns(reason=pl.lit(None, pl.String))
    if config.labeler == "search" and config.balance:
        selection = balance_solutions(dataset, config.seed)
        dataset, excluded = selection.kept, selection.rejected
    if config.hnc:
        dataset = pl.concat([dataset, hnc_variants(dataset, config.seed)])
    pairs = preference_pairs(problems, nodes, labels, config.pair_labeler, config.pair_margin).with_columns(
        run_id=pl.lit(run_id)
    )
    results = run_suite("dataset_export", with_check_columns(dataset), expectations.dataset_suite())
    if dataset.is_empty() or not all(result.success for result in results):
        return _BuiltDataset(None, results)
    if not export:
        return _BuiltDataset(None, results, dataset.height)
    version = int(connection.execute("SELECT count(*) FROM datasets").fetchone()[0]) + 1
    final = warehouse.datasets_dir / f"v{version}"
    staged = warehouse.datasets_dir / f".v{version}.staging"
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    for split in ("train", "test"):
        dataset.filter(pl.col("split") == split).write_parquet(staged / f"{split}.parquet")
    if not excluded.is_empty():
        excluded.write_parquet(staged / "excluded.parquet")  # left out by balancing, with the reason
    if not pairs.is_empty():
        export_pairs(pairs, staged / "pairs.parquet")
    summary.new_pairs = insert_new(connection, PREFERENCE_PAIRS, pairs)
    row = {
        "dataset_id": content_id("dataset", snapshot_id, config.model_dump_json()),
        "version": version, "snapshot_id": snapshot_id, "labeler": config.labeler, "path": str(final),
        "n_train": dataset.filter(pl.col("split") == "train").height,
        "n_test": dataset.filter(pl.col("split") == "test").height,
        "n_steps": int(dataset["completions"].list.len().sum()),
        "test_fraction": config.test_fraction,
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None), "run_id": run_id,
    }
    insert_new(connection, DATASETS, DATASETS.frame([row]))
    summary.dataset_version, summary.dataset_path, summary.dataset_rows = version, str(final), dataset.height
    summary.skipped_solutions = len(skipped)
    return _BuiltDataset((staged, final), results, dataset.height)


def exclusive_writer(warehouse: WarehouseConfig, run_id: str):
    """Local catalogs take one writer at a time (a second refuses at once). A PostgreSQL catalog
    takes concurrent writers with different run ids: DuckLake commits them optimistically, and
    shard workers only insert. Two writers of the same run would both find its rows missing and
    both insert them, so there the second refuses at once, through an advisory lock on the
    catalog's server that is held for the run."""
    if warehouse.catalog.startswith("postgres:"):
        return catalog_lock(warehouse.catalog, f"run {run_id}", activity=f"writing run {run_id}")
    return writer_lock(warehouse.data_dir)


# Building and gating a dataset version takes seconds to minutes; a build waits this long for another.
DATASET_LOCK_WAIT_S = 900.0


def dataset_version_lock(warehouse: WarehouseConfig, building: bool = True):
    """A dataset version's number counts the versions before it. Writers on different machines
    could count at once and take the same number, so on a PostgreSQL catalog the builds take
    turns (a local catalog's writer lock already makes them). Taken before the transaction
    begins, so that it reads the version committed by the build before it."""
    if not (building and warehouse.catalog.startswith("postgres:")):
        return contextlib.nullcontext()
    return catalog_lock(warehouse.catalog, "dataset version", activity="building a dataset version",
                        wait_seconds=DATASET_LOCK_WAIT_S)


@flow(name="prmforge-dataset-build", log_prints=False)
def build_dataset_flow(config: DatasetConfig, warehouse: WarehouseConfig) -> GenerateSummary:
    """A dataset version from the warehouse's last committed snapshot (e.g. after shard workers
    finished), read at that snapshot: what other machines commit meanwhile stays out of it."""
    run_id = content_id("run", "dataset", config.model_dump_json(), datetime.now(timezone.utc).isoformat())
    summary = GenerateSummary(run_id, "completed")
    with exclusive_writer(warehouse, run_id), dataset_version_lock(warehouse):
        connection = connect(warehouse)
        try:
            snapshot_id = current_snapshot(connection)  # outside a transaction: the last committed one
            with _transaction(connection) as transaction:
                built = _build_dataset(connection, warehouse, config, run_id, snapshot_id, summary,
                                       read_at=snapshot_id)
                transaction.staged = built.staged
                enforce(built.gates)
                transaction.commit(f"run {run_id}: dataset build from snapshot {snapshot_id}")
            summary.snapshot_id = snapshot_id
        finally:
            connection.close()
    return summary


@flow(name="prmforge-generate", log_prints=False)
def generate_flow(config: GenerateConfig, warehouse: WarehouseConfig) -> GenerateSummary:
    began = time.perf_counter()
    started_at = datetime.now(timezone.utc).replace(tzinfo=None)
    run_id = run_id_for(config)
    loaded = load_problems(config)  # a bad seed file fails here, before anything is written
    with exclusive_writer(warehouse, run_id):
        connection = connect(warehouse)
        try:
            done = connection.execute(
                "SELECT count(*) FROM runs WHERE run_id = ? AND status = 'completed'", [run_id]
            ).fetchone()[0]
            if done:
                return GenerateSummary(run_id, "already done", problems=len(loaded.problems))
            summary = GenerateSummary(run_id, "completed", problems=len(loaded.problems),
                                      quarantined=len(loaded.quarantined))
            known_nodes = _ids(connection, "nodes", "node_id")
            known_problems = _ids(connection, "problems", "problem_id")
            labelled = _ids(connection, f"step_labels WHERE labeler = '{config.labeler}'", "node_id")

            cache_dir = warehouse.data_dir / "cache"
            solutions, tree, sample_usage = sample_tree(config, loaded.problems, cache_dir)
            summary.solutions = len(solutions)
            summary.solved = sum(solution.is_correct for solution in solutions)
            request = LabelRequest(
                nodes={node.node_id: node for node in tree},
                problems={problem.problem_id: problem for problem in loaded.problems},
                to_label=[node for node in tree if node.node_id not in labelled],
                rollouts_per_step=config.rollouts,
                params=sampling_params(config, "rollouts"),
            )
            labelled_now = label_steps(config, request, cache_dir)
            verdicts = verify_steps(config, request)
            consensus_rows, consensus_labels = CONSENSUS.empty_frame(), STEP_LABELS.empty_frame()
            if config.consensus:
                # Labels other runs stored for these nodes vote too (e.g. mc earlier, the judge now).
                wanted = config.consensus_sources or labeler_names()
                stored = {name: _stored_labels(connection, name, request.nodes) for name in wanted}
                labels_by_source = labeler_sources(
                    config.labeler, {label.node_id: label for label in labelled_now.labels},
                    {name: labels for name, labels in stored.items() if labels or name == config.labeler},
                    config.consensus_sources,
                )
                consensus_rows, consensus_labels = decide_consensus(config, request, labels_by_source, verdicts, run_id)
                summary.consensus_decided = consensus_rows.height
                summary.consensus_kept = int(consensus_rows["kept"].sum()) if consensus_rows.height else 0

            usage = PolicyUsage()
            usage.add(sample_usage)
            usage.add(labelled_now.usage)
            policy_name = load_policy(config.policy).name
            new = {
                "problems": frames.problems_frame(loaded.problems, run_id),
                "quarantine": frames.quarantine_frame(loaded.quarantined, run_id),
                "nodes": frames.nodes_frame(tree, policy_name, sampling_params(config, "solutions"), run_id),
                "rollouts": pl.concat([
                    frames.rollouts_frame(labelled_now.rollouts, policy_name, sampling_params(config, "rollouts"), run_id),
                    frames.judgements_frame(labelled_now, policy_name, run_id),  # the judge's raw prompts and answers
                ]),
                "step_labels": pl.concat([frames.labels_frame(labelled_now.labels, run_id), consensus_labels]),
                "verdicts": verdicts_frame(verdicts, run_id) if verdicts else VERDICTS.empty_frame(),
                "consensus": consensus_rows,
                "policy_usage": POLICY_USAGE.frame([
                    _usage_row(run_id, "solutions", None, policy_name, sample_usage),
                    _usage_row(run_id, "labels", config.labeler, policy_name, labelled_now.usage),
                ]),
            }
            gate_results = check_gates(new, known_nodes, known_problems)
            try:
                enforce(gate_results)
            except GateFailed:
                _record_failure(connection, run_id, config, gate_results)
                raise
            summary.policy_seconds = usage.seconds
            summary.generated_tokens = usage.generated_tokens
            run_row = {
                "run_id": run_id, "flow": "generate", "config_json": config.model_dump_json(),
                "policy": policy_name, "started_at": started_at,
                "n_problems": len(loaded.problems), "policy_seconds": usage.seconds,
                "wall_seconds": time.perf_counter() - began, "generated_tokens": usage.generated_tokens,
            }
            try:
                with dataset_version_lock(warehouse, building=config.publish_dataset):
                    publish(connection, warehouse, config, run_id, new, gate_results, run_row, summary)
            except GateFailed as failure:
                _record_failure(connection, run_id, config, failure.failures)
                raise
        finally:
            connection.close()
    summary.wall_seconds = time.perf_counter() - began
    return summary
