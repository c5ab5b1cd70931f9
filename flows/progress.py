"""Progress bars for long stages (rich), quiet when nothing is listening."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def stage(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar for one stage; yields `advance(count)`."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        transient=False,
    ) as progress:
        task_id = progress.add_task(description, total=total)
        yield lambda count: progress.advance(task_id, count)
