"""`prmforge verify`: score the step verifiers alone on a ProcessBench-format file."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

COMMAND = "verify"


def verify(
    processbench: Annotated[
        Path, typer.Option("--processbench", help="ProcessBench-format JSONL: id, problem, steps, label.")
    ],
    verifiers: Annotated[
        str, typer.Option("--verifiers", help="Comma-separated verifiers: arith, z3, code, lean.")
    ] = "arith,z3,code,lean",
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    budget_ms: Annotated[
        float, typer.Option("--budget-ms", help="Time budget per solution, all verifiers together.")
    ] = 60_000.0,
) -> None:
    """Per verifier: coverage, precision of invalid verdicts, false-alarm rate, first-error accuracy and F1."""
    from flows.cli import fail
    from tasks.processbench import ProcessBenchError, evaluate_verifiers, read_processbench
    from tasks.verification import load_verifiers, parse_verifier_names

    try:
        names = parse_verifier_names(verifiers)
    except ValueError as error:
        fail(str(error))
    if not names:
        fail("--verifiers names no verifier")
    try:
        rows, bad = read_processbench(processbench)
    except ProcessBenchError as error:
        fail(str(error))
    for row in bad:
        typer.echo(f"skipped {processbench}:{row.line}: {row.reason}", err=True)
    if not rows:
        fail(f"{processbench} has no valid rows ({len(bad)} bad)")
    scores = evaluate_verifiers(rows, load_verifiers(names), budget_ms)
    if as_json:
        report = {
            "file": str(processbench),
            "rows": len(rows),
            "erroneous": sum(row.label != -1 for row in rows),
            "steps": sum(len(row.steps) for row in rows),
            "bad_rows": [asdict(row) for row in bad],
            "verifiers": [asdict(score) for score in scores],
        }
        typer.echo(json.dumps(report, indent=1))
        return
    _print_table(processbench, rows, bad, scores)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_table(path, rows, bad, scores) -> None:
    from rich.console import Console
    from rich.table import Table

    erroneous = sum(row.label != -1 for row in rows)
    typer.echo(f"{path}: {len(rows)} solutions ({erroneous} erroneous), {len(bad)} bad rows")
    table = Table(
        "verifier", "coverage", "invalid precision", "false alarms", "acc. erroneous", "acc. correct", "F1", "ms/step"
    )
    for score in scores:
        table.add_row(
            score.verifier,
            f"{_share(score.coverage)} ({score.steps_known}/{score.steps})",
            f"{_share(score.invalid_precision)} ({score.invalid_correct}/{score.invalid_verdicts})",
            f"{_share(score.false_alarm_rate)} ({score.false_alarms}/{len(rows)})",
            f"{_share(score.accuracy_erroneous)} ({score.erroneous_exact}/{score.erroneous})",
            f"{_share(score.accuracy_correct)} ({score.correct_exact}/{score.correct})",
            _share(score.f1),
            f"{score.ms_per_step:.1f}",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Adds `verify` to the main app, once."""
    if any(command.name == COMMAND for command in app.registered_commands):
        return
    app.command(COMMAND)(verify)
