"""Writer locks. A local warehouse takes one writer at a time; a second waits (up to a limit),
then refuses. A PostgreSQL catalog locks by name, with advisory locks on the catalog's own server."""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from warehouse.connection import WarehouseError, catalog_unreachable


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


def advisory_key(name: str) -> int:
    """The signed 64-bit key of a named lock; the prefix keeps clear of other applications' keys.

    >>> advisory_key("run r1") == advisory_key("run r1") != advisory_key("run r2")
    True
    """
    return int.from_bytes(hashlib.sha256(f"prmforge:{name}".encode()).digest()[:8], "big", signed=True)


_HOLDER = """
SELECT activity.application_name FROM pg_locks AS lock JOIN pg_stat_activity AS activity USING (pid)
WHERE lock.locktype = 'advisory' AND lock.granted AND lock.objsubid = 1
  AND lock.classid::bigint = %s AND lock.objid::bigint = %s AND lock.database = (
    SELECT oid FROM pg_database WHERE datname = current_database())
"""


@contextmanager
def catalog_lock(catalog: str, name: str, activity: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the advisory lock `name` on the server of a `postgres:` catalog for the block.

    The lock lives in a session of its own, so the warehouse connection's commits do not touch
    it, and the server drops it when that session ends: when the block exits, or when the
    process dies, even by SIGKILL. A second holder waits up to `wait_seconds`, then refuses in one
    line that names the holder and says it is `activity`.
    """
    import psycopg  # only PostgreSQL catalogs need it

    conninfo = catalog.removeprefix("postgres:")
    me = f"prmforge {socket.gethostname()} pid {os.getpid()}"
    try:
        session = psycopg.connect(conninfo, autocommit=True, connect_timeout=10, application_name=me[:63])
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].removeprefix("connection failed: ")
        raise catalog_unreachable(conninfo, reason) from None
    key = advisory_key(name)
    deadline = time.monotonic() + wait_seconds
    try:
        while not session.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]:
            if time.monotonic() >= deadline:
                row = session.execute(_HOLDER, [(key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF]).fetchone()
                holder = (row[0] if row else None) or "another session"
                raise WarehouseError(
                    f"another prmforge run ({holder}) is {activity} on the PostgreSQL catalog; "
                    "wait for it to finish"
                )
            time.sleep(0.5)
        yield
    finally:
        session.close()


def shared_catalog_lock(catalog: str, name: str, activity: str, wait_seconds: float = 0.0) -> AbstractContextManager:
    """`catalog_lock` on a `postgres:` catalog, which machines share; nothing on a local catalog,
    where the writer lock on the data directory already keeps every other writer out."""
    if not catalog.startswith("postgres:"):
        return nullcontext()
    return catalog_lock(catalog, name, activity, wait_seconds)
