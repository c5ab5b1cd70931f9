"""The generate flow: seed problems -> rollout tree -> Monte Carlo labels -> gated commit -> dataset.

Everything a run writes commits after every quality gate has passed (flows/publish.py: in DuckLake
snapshots whose messages name the run). A failed gate publishes nothing but its own results.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from flows.progress import announce, stage
from flows.publish import GenerateSummary, dataset_version_lock, exclusive_writer, publish, record_failure
from schemas import expectations
from schemas.config import GenerateConfig, WarehouseConfig, identity_json
from schemas.records import PolicyUsage, Problem, SamplingParams
from schemas.tables import CONSENSUS, POLICY_USAGE, STEP_LABELS, VERDICTS
from tasks import frames
from tasks.consensus import decisions_frame, labeler_sources, run_consensus
from tasks.gates import GateFailed, GateResult, enforce, run_suite
from tasks.fit import admit_problems, refuse_unsolvable
from tasks.ids import content_id
from tasks.ingest import IngestResult, read_seed_file
from tasks.labelers.base import LabelRequest, LabelResult
from tasks.labelers.registry import get_labeler, labeler_names
from tasks.policies.base import engine_restarts
from tasks.policies.cache import CachedPolicy
from tasks.policies.registry import load_policy
from tasks.policies.timeout import TimeoutPolicy
from tasks.prompts import PromptFormat, format_for
from tasks.synthetic import generate_problems
from tasks.tree import build_tree, sample_solutions
from tasks.verification import load_verifiers, solution_paths, verdicts_frame, verify_tree
from warehouse.connection import connect
from warehouse.writes import read_table


def run_id_for(config: GenerateConfig, prompt_format: PromptFormat | None = None) -> str:
    """The same inputs (config, seed file content, and the prompt format's template and few-shot
    examples) always give the same run id."""
    seeds_digest = ""
    if config.seeds_file is not None and Path(config.seeds_file).is_file():
        seeds_digest = hashlib.sha256(Path(config.seeds_file).read_bytes()).hexdigest()
    prompt_format = prompt_format or format_for(config)
    return content_id("run", "generate", identity_json(config), seeds_digest, prompt_format.id)


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


@task(name="check-policy-fit", cache_policy=NO_CACHE)
def admit_to_policy(config: GenerateConfig, loaded: IngestResult, prompt_format: PromptFormat) -> IngestResult:
    """Problems whose prompt does not fit the policy's context go to quarantine, with the reason."""
    policy = load_policy(config.policy)
    admitted = admit_problems(policy, loaded, prompt_format, config.max_new_tokens, policy.name)
    if len(admitted.problems) < len(loaded.problems):
        announce(f"{len(loaded.problems) - len(admitted.problems)} problems do not fit {policy.name}'s context: "
                 "quarantined (see the quarantine table)")
    return admitted


@task(name="sample-solutions", cache_policy=NO_CACHE)
def sample_tree(config: GenerateConfig, problems: list[Problem], cache_dir: Path, prompt_format: PromptFormat):
    policy = policy_for(config, cache_dir)
    restarts_before = len(engine_restarts(policy))
    with stage("sampling solutions", len(problems)) as advance:
        solutions, usage = sample_solutions(
            policy, problems, config.samples, sampling_params(config, "solutions"),
            progress=advance, prompt_format=prompt_format,
        )
    usage.engine_restarts = _report_restarts(policy, restarts_before, "sampling")
    return solutions, build_tree(solutions), usage


@task(name="label-steps", cache_policy=NO_CACHE)
def label_steps(config: GenerateConfig, request: LabelRequest, cache_dir: Path) -> LabelResult:
    policy = policy_for(config, cache_dir)
    options = {"budget": config.adaptive_budget} if config.labeler == "adaptive" else {}
    labeler = get_labeler(config.labeler, **options)
    restarts_before = len(engine_restarts(policy))
    with stage(f"labelling steps ({config.labeler}, k={config.rollouts})", len(request.to_label)) as advance:
        result = labeler.label(policy, request, progress=advance)
    result.usage.engine_restarts = _report_restarts(policy, restarts_before, "labelling")
    return result


def _report_restarts(policy, before: int, stage_name: str) -> int:
    """Say which engine deaths the stage survived; their count goes to policy_usage."""
    survived = engine_restarts(policy)[before:]
    for restart in survived:
        announce(f"{stage_name}: the policy's engine died ({restart.reason}); a new one took "
                 f"{restart.seconds:.0f} s to start and got the {restart.resubmitted} unanswered prompts")
    return len(survived)


@task(name="verify-steps", cache_policy=NO_CACHE)
def verify_steps(config: GenerateConfig, request: LabelRequest) -> dict:
    """Every step of the tree through each verifier of the run: node id -> verdicts."""
    names = config.verifiers_to_run()
    if not names:
        return {}
    announce(f"verifying steps ({', '.join(names)})")
    questions = {problem_id: problem.question for problem_id, problem in request.problems.items()}
    return verify_tree(request.nodes, questions, load_verifiers(names), config.verify_budget_ms)


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
        "seconds": usage.seconds, "calls": usage.calls, "engine_restarts": usage.engine_restarts,
    }


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


@flow(name="prmforge-generate", log_prints=False)
def generate_flow(config: GenerateConfig, warehouse: WarehouseConfig) -> GenerateSummary:
    began = time.perf_counter()
    started_at = datetime.now(timezone.utc).replace(tzinfo=None)
    prompt_format = format_for(config)  # a template that does not render fails here
    run_id = run_id_for(config, prompt_format)
    loaded = load_problems(config)  # a bad seed file fails here, before anything is written
    refuse_unsolvable(load_policy(config.policy), loaded.problems, prompt_format)  # so does a policy that cannot
    with exclusive_writer(warehouse, run_id):
        connection = connect(warehouse)
        try:
            done = connection.execute(
                "SELECT count(*) FROM runs WHERE run_id = ? AND status = 'completed'", [run_id]
            ).fetchone()[0]
            if done:
                return GenerateSummary(run_id, "already done", problems=len(loaded.problems))
            loaded = admit_to_policy(config, quote(loaded), prompt_format)
            summary = GenerateSummary(run_id, "completed", problems=len(loaded.problems),
                                      quarantined=len(loaded.quarantined))
            known_nodes = _ids(connection, "nodes", "node_id")
            known_problems = _ids(connection, "problems", "problem_id")
            labelled = _ids(connection, f"step_labels WHERE labeler = '{config.labeler}'", "node_id")

            cache_dir = warehouse.data_dir / "cache"
            solutions, tree, sample_usage = sample_tree(config, quote(loaded.problems), cache_dir, prompt_format)
            summary.solutions = len(solutions)
            summary.solved = sum(solution.is_correct for solution in solutions)
            request = LabelRequest(
                nodes={node.node_id: node for node in tree},
                problems={problem.problem_id: problem for problem in loaded.problems},
                to_label=[node for node in tree if node.node_id not in labelled],
                rollouts_per_step=config.rollouts,
                params=sampling_params(config, "rollouts"),
                prompt_format=prompt_format,
            )
            verdicts = verify_steps(config, quote(request))  # first: the adaptive labeller reads them
            request = replace(request, verdicts=verdicts)
            labelled_now = label_steps(config, quote(request), cache_dir)
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
                consensus_rows, consensus_labels = decide_consensus(
                    config, quote(request), quote(labels_by_source), quote(verdicts), run_id)
                summary.consensus_decided = consensus_rows.height
                summary.consensus_kept = int(consensus_rows["kept"].sum()) if consensus_rows.height else 0

            usage = PolicyUsage()
            usage.add(sample_usage)
            usage.add(labelled_now.usage)
            policy_name = load_policy(config.policy).name
            new = {
                "problems": frames.problems_frame(loaded.problems, run_id),
                "quarantine": frames.quarantine_frame(loaded.quarantined, run_id),
                "nodes": frames.nodes_frame(tree, policy_name, sampling_params(config, "solutions"), run_id)
                .with_columns(prompt_format=pl.lit(prompt_format.id)),
                "rollouts": pl.concat([
                    frames.rollouts_frame(labelled_now.rollouts, policy_name, sampling_params(config, "rollouts"), run_id),
                    frames.judgements_frame(labelled_now, policy_name, run_id),  # the judge's raw prompts and answers
                ]).with_columns(prompt_format=pl.lit(prompt_format.id)),
                "step_labels": pl.concat([frames.labels_frame(labelled_now.labels, run_id), consensus_labels]),
                "verdicts": verdicts_frame(verdicts, run_id) if verdicts else VERDICTS.empty_frame(),
                "consensus": consensus_rows,
                "policy_usage": POLICY_USAGE.frame([
                    _usage_row(run_id, "solutions", None, policy_name, sample_usage),
                    _usage_row(run_id, "labels", config.labeler, policy_name, labelled_now.usage),
                ]),
            }
            gate_results = check_gates(quote(new), quote(known_nodes), quote(known_problems))
            try:
                enforce(gate_results)
            except GateFailed:
                record_failure(connection, run_id, config, gate_results)
                raise
            summary.policy_seconds = usage.seconds
            summary.generated_tokens = usage.generated_tokens
            run_row = {
                "run_id": run_id, "flow": "generate", "config_json": config.model_dump_json(),
                "policy": policy_name, "started_at": started_at,
                "n_problems": len(loaded.problems), "policy_seconds": usage.seconds,
                "wall_seconds": time.perf_counter() - began, "generated_tokens": usage.generated_tokens,
                "prompt_format": json.dumps(prompt_format.description(), ensure_ascii=False),
            }
            try:
                with dataset_version_lock(warehouse, building=config.publish_dataset):
                    publish(connection, warehouse, config, run_id, quote(new), quote(gate_results), run_row, summary)
            except GateFailed as failure:
                record_failure(connection, run_id, config, failure.failures)
                raise
        finally:
            connection.close()
    summary.wall_seconds = time.perf_counter() - began
    return summary
