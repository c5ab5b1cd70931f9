"""The processes of one training run under `torchrun` or `accelerate launch`: which is the main one,
and how it hands the others what it read.

Every process trains its share of each batch, but only the main one touches the warehouse: the
others would wait on its writer lock, and would each register the model. What they need from the
catalog (the dataset's folder, the model id) the main process reads and hands them; the examples
themselves they read from the dataset's files. If the main process fails first, the others are told
and exit as well, instead of waiting in a collective; a process that dies later takes the others
down through the launcher.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from schemas.errors import UserError, first_line

T = TypeVar("T")


class MainProcessFailed(UserError, RuntimeError):
    """Raised on the other processes when the main one could not prepare the run."""


# Where launchers put the process count and rank: torchrun and accelerate launch on GPUs; MPI (which
# accelerate launch uses for several CPU processes) in its own names, as accelerate reads them.
COUNT_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
INDEX_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def _first_set(names: tuple[str, ...], default: int) -> int:
    return next((int(os.environ[name]) for name in names if os.environ.get(name)), default)


def count() -> int:
    """How many processes train together (1 without a launcher)."""
    return _first_set(COUNT_VARIABLES, 1)


def index() -> int:
    """This process's rank (0 is the main process)."""
    return _first_set(INDEX_VARIABLES, 0)


def is_main() -> bool:
    return index() == 0


def join(device: str) -> None:
    """Join the other processes now, as the Trainer would later (accelerate's PartialState is one
    per process and the Trainer reuses it), so that the main process can hand them what it read."""
    if count() > 1:
        from accelerate import PartialState

        PartialState(cpu=device == "cpu")


def from_main(read: Callable[[], T], device: str) -> T:
    """`read()` on the main process; its result on every process. The others do not call `read`.
    If it fails, the main process raises its error and the others a one-line MainProcessFailed."""
    if count() == 1:
        return read()
    import torch.distributed

    join(device)
    outcome: list = [None]
    if is_main():
        try:
            outcome = [("value", read())]
        except BaseException as error:
            told = first_line(error) if isinstance(error, UserError) else f"{type(error).__name__}: {first_line(error)}"
            torch.distributed.broadcast_object_list([("error", told)], src=0)
            raise
    torch.distributed.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if kind == "error":
        raise MainProcessFailed(f"the main process failed: {value}")
    return value


def leave() -> None:
    """Close this process's side of the process group (torch warns at exit otherwise)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
