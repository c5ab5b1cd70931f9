"""`prmforge critic train`: fine-tune a generative critic that the judge labeller uses as its backend."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.environment import configure_prefect

critic_app = typer.Typer(help="A generative critic: names a solution's first wrong step (the judge's backend).",
                         no_args_is_help=True)
DataDir = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Warehouse directory (default ./data or PRMFORGE_DATA_DIR).")
]


@critic_app.command("train")
def critic_train(
    dataset: Annotated[Optional[int], typer.Option("--dataset", help="Dataset version whose train split it learns from (default: the latest).")] = None,
    base: Annotated[Optional[str], typer.Option("--base", help="Local HF causal LM to start from (default: the embedded policy, its positions extended).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", help="Where to save the critic (default: DATA_DIR/critics/<id>).")] = None,
    positions: Annotated[Optional[int], typer.Option("--positions", help="The critic's context in tokens (a GPT-2 base shorter than this is extended; default: the base's own for stepwise, 768 for whole).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Solutions per optimizer step.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Peak AdamW learning rate.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the batch order.")] = None,
    balance: Annotated[Optional[bool], typer.Option("--balance/--no-balance", help="Repeat the rarer verdict kind (a named step, or none) until both are as many.")] = None,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="stepwise (default): one step per prompt, answered with its arithmetic recomputed then ok or wrong; whole: name the first wrong step of the whole judge prompt.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default 1, for a shared machine).")] = None,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Teach a causal LM the judge prompt's answer: the first step the dataset labels wrong, or "none"."""
    from flows.cli import _warehouse
    from flows.cli_models import _fail, _one_line_errors, _quiet_stdout
    from tasks.critic import CriticConfig

    options = {"n_positions": positions, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
               "seed": seed, "balance": balance, "protocol": protocol,
               "threads": threads}
    options = {key: value for key, value in options.items() if value is not None}
    if "steps" in options:  # a short run keeps its warm-up under a tenth of its steps
        options["warmup_steps"] = min(CriticConfig.warmup_steps, options["steps"] // 10)
    try:
        config = CriticConfig(**options)
    except ValueError as error:
        _fail(f"invalid option: {error}")
    warehouse = _warehouse(data_dir)
    configure_prefect()
    from flows.critic import critic_flow

    with _one_line_errors("interrupted: nothing was saved; rerun to train again"), _quiet_stdout(as_json):
        summary = critic_flow(config, warehouse, dataset, base, output)
    if as_json:
        typer.echo(json.dumps(asdict(summary) | {"judge": summary.judge_spec}, indent=1, default=str))
        return
    metrics = summary.metrics
    typer.echo(
        f"critic ({summary.status}): {summary.path}\n"
        f"  {metrics.get('examples')} solutions of dataset v{summary.dataset_version} ({metrics.get('skipped', 0)} too long), "
        f"loss {metrics.get('first_loss')} -> {metrics.get('final_loss')}\n"
        f"  use it as the judge: prmforge generate --labeler judge --policy {summary.judge_spec}"
    )


def register(app: typer.Typer) -> None:
    """Adds `prmforge critic ...` to the main app, once."""
    if not any(group.name == "critic" for group in app.registered_groups):
        app.add_typer(critic_app, name="critic")
