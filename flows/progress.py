"""Progress for long stages: rich bars on a terminal, one line per stage in logs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def stage(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar for one stage; yields `advance(count)`."""
    announce(description)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task_id = progress.add_task(description, total=total)
        yield lambda count: progress.advance(task_id, count)


def announce(description: str) -> None:
    """One line naming the stage that starts now, for logs and for tools that watch a run."""
    print(f"[stage] {description}", file=sys.stderr, flush=True)
