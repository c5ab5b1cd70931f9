"""The `prmforge` command line. Quick commands import only duckdb and polars; flows load lazily."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.environment import configure_prefect
from schemas.errors import first_line

app = typer.Typer(
    help="prmforge: step-labelled data for process reward models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="The policy model that writes solutions.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
dataset_app = typer.Typer(help="Dataset versions.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")

DataDir = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Warehouse directory (default ./data or PRMFORGE_DATA_DIR).")
]


def fail(message: str, code: int = 1) -> None:
    """One line on stderr and a non-zero exit: tracebacks are never the user interface."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _warehouse(data_dir: Path | None):
    from schemas.config import WarehouseConfig

    return WarehouseConfig(data_dir=data_dir) if data_dir else WarehouseConfig()


def _load_config_file(path: Path) -> dict:
    import yaml

    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        fail(f"cannot read config file {path}: {str(error).splitlines()[0]}")
    if not isinstance(content, dict):
        fail(f"config file {path} must hold a mapping of option names to values")
    return content


@app.command()
def generate(
    problems: Annotated[Optional[int], typer.Option(help="Number of seed problems.")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Solutions sampled per problem.")] = None,
    rollouts: Annotated[Optional[int], typer.Option(help="Monte Carlo completions per step (k).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for problems and sampling.")] = None,
    seeds: Annotated[Optional[Path], typer.Option("--seeds", help="Seed file (JSONL or Parquet).")] = None,
    min_steps: Annotated[Optional[int], typer.Option("--min-steps", help="Fewest steps in a synthetic problem.")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Most steps in a synthetic problem.")] = None,
    test_fraction: Annotated[Optional[float], typer.Option("--test-fraction", help="Share of problems held out in the test split.")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Policy: embedded, transformers:PATH, simulated[:...], vllm:PATH, openai:URL/MODEL.")] = None,
    labeler: Annotated[Optional[str], typer.Option(help="Step labeller: mc, search, adaptive, progress or judge.")] = None,
    adaptive_budget: Annotated[Optional[int], typer.Option("--adaptive-budget", help="The adaptive labeller's rollouts per solution.")] = None,
    verifiers: Annotated[Optional[str], typer.Option(help="Comma-separated step verifiers: arith,z3,lean,code.")] = None,
    consensus: Annotated[Optional[str], typer.Option(help="Consensus rule: default, majority or mc_and_verifiers.")] = None,
    consensus_sources: Annotated[Optional[str], typer.Option("--consensus-sources", help="Comma-separated labellers that vote in consensus (default: every labeller with labels for the steps).")] = None,
    prompt_format: Annotated[Optional[str], typer.Option("--prompt-format", help="plain, chat (the policy's chat template) or a Jinja template file.")] = None,
    system_prompt: Annotated[Optional[str], typer.Option("--system-prompt", help="System message of chat prompts ('' for none).")] = None,
    few_shot: Annotated[Optional[Path], typer.Option("--few-shot", help="Seed file of worked examples (rows with steps) shown before each problem.")] = None,
    chat_template_from: Annotated[Optional[Path], typer.Option("--chat-template-from", help="Local tokenizer whose chat template renders chat prompts (openai: policies then use the completions endpoint).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Longest continuation, in tokens.")] = None,
    shard: Annotated[Optional[str], typer.Option(help="'i/n': only shard i of n of the problems (multi-worker runs).")] = None,
    dataset: Annotated[Optional[bool], typer.Option("--dataset/--no-dataset", help="Publish a dataset version with the run.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML or JSON file of these options.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Sample solutions, label every step, and publish a dataset version (one Prefect flow)."""
    from pydantic import ValidationError

    from schemas.config import GenerateConfig

    options = _load_config_file(config) if config else {}
    overrides = {
        "problems": problems, "samples": samples, "rollouts": rollouts, "seed": seed,
        "seeds_file": seeds, "min_steps": min_steps, "max_steps": max_steps, "test_fraction": test_fraction,
        "policy": policy, "labeler": labeler, "adaptive_budget": adaptive_budget, "consensus": consensus,
        "shard": shard, "publish_dataset": dataset, "prompt_format": prompt_format, "system_prompt": system_prompt,
        "few_shot_file": few_shot, "chat_template_from": chat_template_from, "max_new_tokens": max_new_tokens,
        "verifiers": _names(verifiers), "consensus_sources": _names(consensus_sources),
    }
    options.update({key: value for key, value in overrides.items() if value is not None})
    try:
        settings = GenerateConfig(**options)
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}")
    warehouse = _warehouse(data_dir)
    configure_prefect()
    summary = _run_generate(settings, warehouse)
    _print_summary(summary, warehouse)


def _names(listed: str | None) -> tuple[str, ...] | None:
    """A comma-separated option as a tuple of names; None when the option was not given."""
    return None if listed is None else tuple(name.strip() for name in listed.split(",") if name.strip())


def _run_generate(settings, warehouse):
    import sqlite3

    import duckdb

    from flows.generate import generate_flow

    quiet_prefect_run_errors()
    try:
        return generate_flow(settings, warehouse)
    except (OSError, duckdb.Error, sqlite3.Error) as error:
        # A full or vanished disk surfaces from DuckDB, SQLite or the OS; the transaction rolled back.
        fail(f"storage error under {warehouse.data_dir}: {first_line(error)}")
    except KeyboardInterrupt:
        fail("interrupted: nothing of this run was published; rerun to resume", code=130)


def quiet_prefect_run_errors() -> None:
    """Prefect logs a failed run's traceback; the command line reports the error in one line instead."""
    import logging

    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _print_summary(summary, warehouse) -> None:
    from rich.console import Console

    console = Console()
    if summary.status == "already done":
        console.print(f"run {summary.run_id} already done: nothing new to write.")
    else:
        console.print(
            f"run {summary.run_id}: {summary.problems} problems ({summary.quarantined} quarantined rows), "
            f"{summary.solutions} solutions, solve rate {summary.solve_rate:.1%}, "
            f"{summary.new_nodes} new steps, {summary.new_labels} new labels, "
            f"{summary.new_rollouts} rollouts; snapshot {summary.snapshot_id}"
        )
        if summary.new_verdicts:
            console.print(f"{summary.new_verdicts} verifier verdicts")
        if summary.consensus_kept is not None:
            console.print(f"consensus kept {summary.consensus_kept} of {summary.consensus_decided} solutions")
        console.print(
            f"policy time {summary.policy_seconds:.1f}s of {summary.wall_seconds:.1f}s, "
            f"{summary.generated_tokens} tokens generated"
        )
        if summary.dataset_version is not None:
            console.print(
                f"dataset version {summary.dataset_version}: {summary.dataset_rows} solutions "
                f"in {summary.dataset_path}"
            )
    console.print(f"warehouse: {warehouse.data_dir.resolve()}")
    console.print('try: prmforge sql "select count(*) from labeled_steps"')


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only SQL statement.")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    data_dir: DataDir = None,
) -> None:
    """Run one read-only SQL query against the last committed state of the warehouse.

    A statement that could write, or reach a file outside the warehouse, is refused (exit 2)."""
    from warehouse.connection import WarehouseError
    from warehouse.sql import QueryFailed, run_query

    if format not in ("table", "csv", "json"):
        fail(f"unknown format '{format}': use table, csv or json")
    try:
        columns, rows = run_query(_warehouse(data_dir), query)
    except QueryFailed as error:  # refused (it could write or reach outside): exit 2
        fail(str(error), code=error.exit_code)
    except WarehouseError as error:
        fail(str(error))
    if format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    elif format == "json":
        typer.echo(json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*("NULL" if value is None else str(value) for value in row))
        Console().print(table)


@dataset_app.command("build")
def dataset_build(
    labeler: Annotated[str, typer.Option(help="Whose labels: mc, search, adaptive, progress, judge, consensus:<rule> or verifier:<name>.")] = "mc",
    test_fraction: Annotated[float, typer.Option(help="Share of problems in the test split.")] = 0.2,
    hnc: Annotated[bool, typer.Option("--hnc/--no-hnc", help="Add merged-step (HNC) variants.")] = True,
    slips: Annotated[int, typer.Option(help="Verifier-checked slipped copies per training solution (0 to 8).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the HNC merge positions and balancing: the shards' --seed gives the dataset a single run would build.")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Build a dataset version from the warehouse as it is now (e.g. after shard workers)."""
    from pydantic import ValidationError

    from schemas.config import DatasetConfig

    try:
        settings = DatasetConfig(labeler=labeler, test_fraction=test_fraction, hnc=hnc, slips=slips, seed=seed)
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}")
    warehouse = _warehouse(data_dir)
    configure_prefect()
    from tasks.gates import GateFailed
    from warehouse.connection import WarehouseError

    from flows.publish import build_dataset_flow

    quiet_prefect_run_errors()
    try:
        summary = build_dataset_flow(settings, warehouse)
    except (WarehouseError, GateFailed) as error:
        fail(str(error))
    if summary.dataset_version is None:
        fail(f"no solution has {labeler} labels on every step: nothing to build")
    typer.echo(f"dataset version {summary.dataset_version}: {summary.dataset_rows} solutions from snapshot "
               f"{summary.snapshot_id} in {summary.dataset_path}")


@policy_app.command("train")
def policy_train(
    output: Annotated[Optional[Path], typer.Option(help="Where to save the model (default: the embedded policy).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the config's).")] = None,
) -> None:
    """Train the embedded GPT-2-shaped policy on synthetic problems (CPU, minutes)."""
    if steps is not None and steps < 1:
        fail(f"--steps must be at least 1, got {steps}")
    configure_prefect()
    from flows.policy import train_policy_flow

    quiet_prefect_run_errors()

    metrics = train_policy_flow(output, steps)
    typer.echo(json.dumps(metrics, indent=1))


@app.command()
def doctor(data_dir: DataDir = None) -> None:
    """Say what this installation can do: warehouse, policy, verifier toolchains."""
    from warehouse.connection import WarehouseError, connect

    warehouse = _warehouse(data_dir)
    try:
        connection = connect(warehouse, read_only=True)
        snapshot = connection.execute("SELECT max(snapshot_id) FROM lake.snapshots()").fetchone()[0]
        connection.close()
        typer.echo(f"warehouse: {warehouse.data_dir.resolve()} ({warehouse.catalog} catalog, snapshot {snapshot})")
    except WarehouseError as error:
        typer.echo(f"warehouse: {error}")
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR

    present = (EMBEDDED_POLICY_DIR / "config.json").exists()
    typer.echo(f"embedded policy: {EMBEDDED_POLICY_DIR} ({'present' if present else 'missing: run prmforge policy train'})")
    try:
        from tasks.verifiers.lean import lean_status

        typer.echo(f"lean: {lean_status()}")
    except ImportError:
        pass


def _register_area_commands() -> None:
    """Each area module adds its commands; importing one costs only typer."""
    import importlib

    for module in AREA_COMMAND_MODULES:
        importlib.import_module(module).register(app)


AREA_COMMAND_MODULES: tuple[str, ...] = ("flows.cli_verify", "flows.cli_models", "flows.cli_critic")


def main() -> None:
    """Every command's errors end here as one line: a UserError says what to do, a storage error
    where it happened, and anything else is reported as a bug (PRMFORGE_DEBUG=1 shows the traceback)."""
    import os
    import sqlite3

    import duckdb

    from schemas.errors import UserError

    _register_area_commands()
    try:
        app()
    except UserError as error:
        _exit_with(str(error), 1)
    except KeyboardInterrupt:
        _exit_with("interrupted", 130)
    except (OSError, duckdb.Error, sqlite3.Error) as error:
        # A full or vanished disk surfaces from DuckDB, SQLite or the OS; open transactions rolled back.
        _exit_with(f"storage error: {first_line(error)}", 1)
    except Exception as error:
        if os.environ.get("PRMFORGE_DEBUG"):
            raise
        _exit_with(f"internal error ({type(error).__name__}: {first_line(error)}); "
                   "rerun with PRMFORGE_DEBUG=1 for the traceback and report it", 1)


def _exit_with(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
