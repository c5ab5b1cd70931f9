"""`prmforge train | score | evaluate | models | nightly | schedule | serve`: reward models and the loop."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.environment import configure_prefect
from schemas.errors import UserError, first_line

DataDir = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Warehouse directory (default ./data or PRMFORGE_DATA_DIR).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fail(message: str, code: int = 1) -> None:
    from flows.cli import fail

    fail(message, code)


@contextlib.contextmanager
def _one_line_errors(interrupted: str = "interrupted") -> Iterator[None]:
    """What a user can act on, as one `error:` line, wherever the command runs.

    main() catches these too, but not for typer's CliRunner, and not Ctrl-C inside a command:
    click turns that into "Aborted!" before main() sees it.
    """
    import sqlite3

    import duckdb
    import httpx

    from flows.cli import quiet_prefect_run_errors

    quiet_prefect_run_errors()
    try:
        yield
    except UserError as error:
        _fail(first_line(error))
    except KeyboardInterrupt:
        _fail(interrupted, 130)
    except (OSError, duckdb.Error, sqlite3.Error) as error:
        # A full, read-only or vanished disk; the open transaction rolled back.
        _fail(f"storage error: {first_line(error)}")
    except httpx.HTTPError as error:
        _fail(f"the Prefect API failed: {first_line(error)} (is its server up? PREFECT_API_URL names it)")


def _warehouse(data_dir: Path | None):
    from flows.cli import _warehouse as warehouse

    return warehouse(data_dir)


def _quiet_stdout(as_json: bool):
    """With --json, progress bars go to stderr so that stdout is only the JSON."""
    import contextlib

    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _settings(model, **options):
    """A validated config, or one line naming the bad option."""
    from pydantic import ValidationError

    try:
        return model(**{key: value for key, value in options.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        _fail(f"invalid option {'.'.join(map(str, first['loc']))}: {first['msg']}")


def train(
    dataset: Annotated[Optional[int], typer.Option("--dataset", help="Dataset version to train on (default: the latest).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Local HF model to start from (default: the embedded policy).")] = None,
    labels: Annotated[str, typer.Option("--labels", help="hard (cross-entropy) or soft (BCE on q).")] = "hard",
    kind: Annotated[str, typer.Option("--kind", help="prm; orm for the outcome baseline; implicit for the implicit PRM (outcome labels through a log-likelihood ratio).")] = "prm",
    epochs: Annotated[Optional[float], typer.Option(help="Passes over the train split.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps, whatever the data's size (overrides --epochs).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Solutions per optimizer step.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Peak AdamW learning rate.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for the head and the batch order.")] = None,
    mixed_precision: Annotated[Optional[str], typer.Option(help="auto (bf16 on a GPU that has it, else fp32), bf16, fp16 or no.")] = None,
    gradient_accumulation_steps: Annotated[Optional[int], typer.Option(help="Passes per optimizer step, each on its share of the batch.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing", help="Recompute activations in the backward pass (less memory).")] = None,
    lora_rank: Annotated[Optional[int], typer.Option(help="Train LoRA adapters of this rank on the base LM (needs peft; 0: off).")] = None,
    fsdp: Annotated[Optional[bool], typer.Option("--fsdp", help="Shard weights and optimizer state over the processes (FSDP; needs GPUs and torchrun or accelerate launch).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint of the same settings.")] = False,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Train a PRM (or the ORM baseline) on a dataset version and register it in the models table.

    Under `torchrun --nproc_per_node N` or `accelerate launch` every process trains its share of each
    batch; the main process alone reads the warehouse, registers the model and prints the summary.
    """
    from tasks.prm import processes
    from tasks.prm.config import PRMTrainConfig
    from tasks.prm.model import device_for

    warehouse = _warehouse(data_dir)
    if dataset is None:
        with _one_line_errors():
            dataset = processes.from_main(lambda: _latest_dataset(warehouse), device_for())
    config = _settings(
        PRMTrainConfig, dataset_version=dataset, base=base, label_kind=labels, kind=kind, epochs=epochs,
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, seed=seed, mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps, gradient_checkpointing=gradient_checkpointing,
        lora_rank=lora_rank, fsdp=fsdp,
    )
    configure_prefect()
    from flows.train import train as train_run

    interrupted = "interrupted: rerun with --resume to continue from the last checkpoint"
    with _one_line_errors(interrupted), _quiet_stdout(as_json):
        summary = train_run(config, warehouse, resume)
    if not processes.is_main():
        return  # the main process prints the run's summary
    if as_json:
        typer.echo(json.dumps(asdict(summary), indent=1, default=str))
        return
    metrics = summary.metrics
    typer.echo(
        f"model v{summary.version} ({summary.status}): {summary.path}\n"
        f"  {metrics.get('steps')} steps on {metrics.get('examples')} solutions ({metrics.get('skipped', 0)} skipped), "
        f"final loss {metrics.get('final_loss')}, held-out step accuracy {metrics.get('test_accuracy')}, "
        f"{metrics.get('tokens_per_second')} tokens/s on {metrics.get('device')}"
    )


def adapt(
    output: Annotated[Path, typer.Option("--output", help="Where to save the adapted base (a Hugging Face directory).")],
    dataset: Annotated[Optional[int], typer.Option("--dataset", help="Dataset version whose training problems are read (default: the latest).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Local HF causal LM to adapt (default: the embedded policy).")] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Reference solutions per step.")] = 16,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 1e-4,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Fine-tune a base LM on the reference solutions of a dataset's training problems.

    Then `prmforge train --base OUTPUT` builds a PRM on it, which reads first errors better in long
    solutions (tasks/prm/adapt.py). Held-out problems are never read."""
    from tasks.prm.adapt import AdaptSettings

    for name, value in (("--steps", steps), ("--batch-size", batch_size)):
        if value < 1:
            _fail(f"{name} must be at least 1, got {value}")
    if not learning_rate > 0:
        _fail(f"--learning-rate must be above 0, got {learning_rate}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        _fail(f"{output} is not empty: choose a new folder for the adapted base")
    configure_prefect()
    from flows.policy import adapt_policy_flow

    with _one_line_errors(), _quiet_stdout(as_json):
        result = adapt_policy_flow(_warehouse(data_dir), dataset, base, output,
                                   AdaptSettings(steps=steps, batch_size=batch_size, learning_rate=learning_rate))
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(f"adapted {result['base']} to {result['problems']} reference solutions of dataset version "
               f"{result['dataset_version']} ({result['skipped']} too long): loss {result['first_loss']} -> "
               f"{result['final_loss']} in {result['seconds']} s\n  saved to {result['output']}: "
               f"prmforge train --base {result['output']}")


def _latest_dataset(warehouse) -> int:
    """The latest dataset version's number (one line if there is none, or no warehouse)."""
    from tasks.prm.registry import find_dataset
    from warehouse.connection import connect

    connection = connect(warehouse, read_only=True)
    try:
        return find_dataset(connection).version
    finally:
        connection.close()


def score(
    model: Annotated[str, typer.Option("--model", help="Model id, version (v3), latest, promoted, or a directory.")],
    problem: Annotated[str, typer.Option("--problem", help="The problem text.")],
    step: Annotated[list[str], typer.Option("--step", help="One step; repeat for each step in order.")],
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """Score one solution: P(step is fine) for every step, and min, last, product and mean."""
    from tasks.prm.registry import find_model
    from warehouse.connection import WarehouseError, connect

    try:
        connection = connect(_warehouse(data_dir), read_only=True)
    except WarehouseError:
        connection = None  # no warehouse: only a directory can name the model
    try:
        from duckdb import CatalogException

        try:
            reference = find_model(connection, model)
        except CatalogException:  # a warehouse from before the models table
            reference = find_model(None, model)
    except UserError as error:
        _fail(str(error))
    finally:
        if connection is not None:
            connection.close()
    from tasks.prm.score import PRMScorer

    with _one_line_errors():
        try:
            with _quiet_stdout(as_json):
                scores = PRMScorer(reference.path).score(problem, step)
        except (ValueError, OSError) as error:  # not a trained PRM, or one with files missing
            _fail(first_line(error))
    if as_json:
        typer.echo(json.dumps(asdict(scores) | {"model": reference.path}, indent=1))
        return
    for index, (text, value) in enumerate(zip(step, scores.per_step, strict=True), start=1):
        typer.echo(f"{value:.4f}  step {index}: {text.splitlines()[0][:70] if text else ''}")
    typer.echo(f"min {scores.min:.4f}  last {scores.last:.4f}  product {scores.product:.4f}  mean {scores.mean:.4f}")


def evaluate(
    model: Annotated[str, typer.Option("--model", help="Model id, version (v3), latest, promoted, or a directory.")],
    processbench: Annotated[Optional[Path], typer.Option("--processbench", help="ProcessBench-format JSONL for first-error identification (default: the dataset's test split).")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="First-error threshold (default: chosen on a held-out half).")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for the HTML report.")] = None,
    dataset: Annotated[Optional[int], typer.Option("--dataset", help="Dataset version whose test split is held out (default: the model's).")] = None,
    orm: Annotated[Optional[str], typer.Option("--orm", help="ORM baseline (default: the latest ORM on the same dataset and base).")] = None,
    bon_policy: Annotated[Optional[str], typer.Option("--bon-policy", help="Sample fresh Best-of-N solutions with this policy (default: reuse the test split's).")] = None,
    bon_samples: Annotated[Optional[int], typer.Option("--bon-samples", help="Fresh solutions per held-out problem.")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """First-error F1; Best-of-N against majority and PRM-weighted vote, ORM, random, oracle; stored, reported."""
    from tasks.prm.config import EvaluateConfig

    config = _settings(EvaluateConfig, threshold=threshold, bon_policy=bon_policy, bon_samples=bon_samples)
    warehouse = _warehouse(data_dir)
    configure_prefect()
    from flows.evaluate import evaluate_flow

    with _one_line_errors("interrupted: an evaluation is stored whole or not at all"), _quiet_stdout(as_json):
        summary = evaluate_flow(model, warehouse, config, processbench, dataset, orm, report or warehouse.data_dir / "reports")
    if as_json:
        typer.echo(json.dumps(asdict(summary), indent=1, default=str))
        return
    _print_evaluation(summary)


def _print_evaluation(summary) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide enough that no interval wraps
        console = Console(width=160)
    result = summary.first_error
    if result is not None:
        console.print(
            f"first error on {summary.evaluation_set}: F1 {_share(result.f1)} "
            f"(erroneous {_share(result.accuracy_erroneous)}, correct {_share(result.accuracy_correct)}, "
            f"threshold {result.threshold:.4f}, {result.rows} rows)"
        )
        console.print(f"  {summary.threshold_source}")
    sizes = sorted({point.n for points in summary.best_of_n.values() for point in points})
    if sizes:
        problems = max((point.problems for points in summary.best_of_n.values() for point in points), default=0)
        table = Table(title=f"Best-of-N accuracy (95% bootstrap interval) on {problems} held-out problems")
        for header in ["method", *[f"N={n}" for n in sizes]]:
            table.add_column(header, no_wrap=True)
        for method, points in summary.best_of_n.items():
            by_n = {point.n: point for point in points}
            table.add_row(method, *[_point(by_n.get(n)) for n in sizes])
        console.print(table)
        for line in _differences(summary.best_of_n, sizes[-1]):
            console.print(line)
    share, eligible = summary.min_on_last
    console.print(f"minimum on the last step: {_share(share)} of {eligible} solutions; calibration error {_share(summary.calibration_error)}")
    for note in summary.notes:
        console.print(f"note: {note}")
    if summary.report_path:
        console.print(f"report: {summary.report_path}")


def _point(point) -> str:
    if point is None:
        return "-"
    if point.low is None or point.high is None:
        return _share(point.accuracy)
    return f"{point.accuracy:.3f} ({point.low:.2f}-{point.high:.2f})"


def _differences(curves: dict, n: int) -> list[str]:
    """prm_min and the PRM's votes against each baseline at N, paired over the same problems."""
    from tasks.prm.evaluate import PRM_FILTERED_VOTE, PRM_VOTE
    from tasks.prm.stats import paired_difference

    at_n = {method: point for method, points in curves.items() for point in points if point.n == n and point.values}
    lines = []
    for method in ("prm_min", PRM_VOTE, PRM_FILTERED_VOTE):
        if method not in at_n:
            continue
        shown = []
        for baseline in ("majority", "orm", "random"):
            if baseline in at_n:
                difference = paired_difference(at_n[method].values, at_n[baseline].values)
                shown.append(f"- {baseline} {difference.estimate:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]")
        if shown:
            lines.append(f"{method} at N={n}: " + ", ".join(shown) + " (95% paired bootstrap over problems)")
    return lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def models(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Registered models with their metrics; the promoted one is marked."""
    from tasks.prm.registry import list_models
    from warehouse.connection import WarehouseError, connect

    try:
        connection = connect(_warehouse(data_dir), read_only=True)
    except WarehouseError as error:
        _fail(str(error))
    try:
        from duckdb import CatalogException

        try:
            registered = list_models(connection)
            # F1 on held-out dataset problems (not on a ProcessBench file), from the latest evaluation.
            f1 = dict(connection.execute(
                "SELECT model_id, arg_max(value, created_at) FROM evaluations WHERE kind = 'first_error' "
                "AND metric = 'f1' AND details_json LIKE '%\"evaluation_set\": \"dataset:%' GROUP BY model_id"
            ).fetchall())
        except CatalogException:
            registered, f1 = [], {}
    finally:
        connection.close()
    if as_json:
        typer.echo(json.dumps([asdict(model) | {"f1": f1.get(model.model_id)} for model in registered], indent=1, default=str))
        return
    if not registered:
        typer.echo("no models yet: run `prmforge train --dataset VERSION`")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("version", "promoted", "kind", "labels", "dataset", "final loss", "held-out acc.", "held-out F1", "model id")
    for model in registered:
        metrics = model.metrics or {}
        table.add_row(
            f"v{model.version}", "*" if model.promoted else "", model.kind, model.label_kind or "",
            f"v{model.dataset_version} (snapshot {model.dataset_snapshot})", str(metrics.get("final_loss", "")),
            str(metrics.get("test_accuracy", "")), _share(f1.get(model.model_id)), model.model_id[:12],
        )
    Console().print(table)


def _nightly_config(config_file: Path | None, overrides: dict):
    from flows.cli import _load_config_file
    from tasks.prm.config import NightlyConfig

    options = _load_config_file(config_file) if config_file else {}
    options.update({key: value for key, value in overrides.items() if value is not None})
    return _settings(NightlyConfig, **options)


def nightly(
    problems: Annotated[Optional[int], typer.Option(help="Fresh synthetic problems.")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Solutions per problem.")] = None,
    rollouts: Annotated[Optional[int], typer.Option(help="Monte Carlo completions per step.")] = None,
    policy: Annotated[Optional[str], typer.Option(help="Policy spec.")] = None,
    min_new_labels: Annotated[Optional[int], typer.Option(help="Fewest new labelled steps worth retraining on.")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model for retraining.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Training passes.")] = None,
    orm_baseline: Annotated[Optional[bool], typer.Option("--orm-baseline/--no-orm-baseline", help="Also train the ORM baseline.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for the candidate's HTML report.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML or JSON file of nightly options.")] = None,
    data_dir: DataDir = None,
    as_json: AsJson = False,
) -> None:
    """One turn of the loop: new seeds, gated data, a new dataset, retrain, compare, promote only if better."""
    settings = _nightly_config(config, {
        "problems": problems, "samples": samples, "rollouts": rollouts, "policy": policy,
        "min_new_labels": min_new_labels, "base": base, "epochs": epochs, "orm_baseline": orm_baseline,
        "report_dir": str(report) if report else None,
    })
    warehouse = _warehouse(data_dir)
    configure_prefect()
    from flows.nightly import nightly_flow

    with _one_line_errors("interrupted: the decisions made so far are recorded"), _quiet_stdout(as_json):
        summary = nightly_flow(settings, warehouse)
    if as_json:
        typer.echo(json.dumps(asdict(summary), indent=1, default=str))
        return
    for stage, decision, reason in summary.decisions:
        typer.echo(f"{stage:9} {decision:12} {reason}")
    typer.echo(f"nightly {summary.run_id}: {summary.status}")


def schedule(
    cron: Annotated[str, typer.Option("--cron", help="Cron schedule, e.g. '0 2 * * *' for 02:00 every day.")],
    name: Annotated[str, typer.Option("--name", help="Deployment name.")] = "nightly",
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML or JSON file of nightly options.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create (or update) a Prefect deployment of `prmforge nightly` on a cron schedule."""
    settings = _nightly_config(config, {})
    warehouse = _warehouse(data_dir)
    configure_prefect()
    from flows.nightly import nightly_deployment

    with _one_line_errors():
        try:
            deployment = nightly_deployment(cron, settings, warehouse, name)
        except ValueError as error:  # pydantic's ValidationError among them: its first message says why
            errors = error.errors() if hasattr(error, "errors") else []
            reason = errors[0]["msg"].removeprefix("Value error, ") if errors else first_line(error)
            _fail(f"invalid schedule --cron {cron!r}: {reason}")
        deployment_id = deployment.apply()
    serve_command = "prmforge serve" + ("" if name == "nightly" else f" --name {name}")
    typer.echo(f"deployment prmforge-nightly/{name} ({deployment_id}) runs on '{cron}'; start it with `{serve_command}`")


def serve(
    name: Annotated[str, typer.Option("--name", help="Deployment name, as given to `prmforge schedule`.")] = "nightly",
    port: Annotated[int, typer.Option("--port", help="Port of the local Prefect server started when no Prefect API is set.")] = 4200,
) -> None:
    """Run the deployment `prmforge schedule` created, on its stored schedule and config (Ctrl-C stops)."""
    configure_prefect()
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.nightly import served_deployment

    with contextlib.ExitStack() as stack, _one_line_errors():
        if not PREFECT_API_URL.value():
            # Prefect's in-process API does not run the scheduler service, so schedules need a server.
            url = _start_local_server(port, stack)
            stack.enter_context(temporary_settings({PREFECT_API_URL: url}))
        prefect_serve(served_deployment(name))


def _start_local_server(port: int, stack: contextlib.ExitStack) -> str:
    """A Prefect server on the project's PREFECT_HOME (where `schedule` stored the deployment), stopped
    when `stack` closes; returns its API URL."""
    import urllib.request

    url = f"http://127.0.0.1:{port}/api"
    typer.echo(f"starting a local Prefect server at {url} (set PREFECT_API_URL to use another)")
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def stop() -> None:
        server.terminate()
        server.wait(timeout=30)

    stack.callback(stop)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return url
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(1)
    _fail(f"the local Prefect server did not start on port {port}: is the port taken? try --port")
    raise AssertionError("unreachable")


COMMANDS = {
    "train": train, "score": score, "evaluate": evaluate, "models": models, "nightly": nightly,
    "schedule": schedule, "serve": serve,
}


def register(app: typer.Typer) -> None:
    """Adds the model commands to the main app, once."""
    present = {command.name for command in app.registered_commands}
    for name, function in COMMANDS.items():
        if name not in present:
            app.command(name)(function)
    from flows.cli import policy_app

    if "adapt" not in {command.name for command in policy_app.registered_commands}:
        policy_app.command("adapt")(adapt)
