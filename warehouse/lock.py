"""One writer at a time per warehouse. A second writer waits (up to a limit), then refuses."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from warehouse.connection import WarehouseError


@contextmanager
def writer_lock(data_dir: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the warehouse's writer lock. The OS releases it if the process dies, even by SIGKILL."""
    path = data_dir / ".writer.lock"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WarehouseError(f"cannot write to the data directory {data_dir}: {error.strerror or error}") from None
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = Path(path).read_text().strip() or "another process"
                    raise WarehouseError(
                        f"another prmforge run ({holder}) is writing to {data_dir}; wait for it to finish"
                    ) from None
                time.sleep(0.5)
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()}".encode())
        yield
    finally:
        os.close(handle)
