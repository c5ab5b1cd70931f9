"""A durable request cache around any policy, so that a rerun resumes instead of resampling.

Each (policy name, prompt, n, sampling params) request is keyed by a content hash, and its n
generations are written to a SQLite file as soon as the inner policy returns them. A run that
stops (a crash, a dead server) loses at most the call in flight; rerunning it serves every stored
request from the file and sends only the rest to the policy. The cache is invisible in
provenance: its `name` is the inner policy's.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from schemas.records import Generation, SamplingParams
from tasks.ids import content_id
from tasks.policies.base import Policy, prompts_per_call
from tasks.prompts import prompt_key

_FORMAT = "policy-request-v1"  # change it when the stored value's shape changes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    key TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    generations TEXT NOT NULL
)
"""


def request_key(policy: str, prompt: str, n: int, params: SamplingParams) -> str:
    """The cache key of one request: a hash of everything that decides its generations.

    >>> request_key("p", "Q", 2, SamplingParams()) == request_key("p", "Q", 2, SamplingParams())
    True
    >>> request_key("p", "Q", 2, SamplingParams()) == request_key("p", "Q", 2, SamplingParams(seed=1))
    False
    """
    return content_id(_FORMAT, policy, prompt, n, _params_json(params))


def _params_json(params: SamplingParams) -> str:
    return json.dumps(asdict(params), sort_keys=True)


class CachedPolicy:
    """`inner` with its answers stored in the SQLite file at `path` (created if missing).

    `hits` and `misses` count prompts served from the file and prompts sent to `inner`.
    """

    def __init__(self, inner: Policy, path: Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Flow tasks may run in worker threads: one connection, guarded by a lock.
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute(_SCHEMA)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def prompts_per_call(self) -> int:
        return prompts_per_call(self.inner)

    def generate(self, prompts: Sequence, n: int, params: SamplingParams) -> list[list[Generation]]:
        """Stored generations for known requests; one inner call, in prompt order, for the rest
        (a prompt repeated within the call is sent once)."""
        params_json, name = _params_json(params), self.name  # request_key's parts, once for the call
        keys = [content_id(_FORMAT, name, prompt_key(prompt), n, params_json) for prompt in prompts]
        found = self._load(set(keys))
        missing = {key: prompt for key, prompt in zip(keys, prompts) if key not in found}
        if missing:
            generated = self.inner.generate(list(missing.values()), n, params)
            if len(generated) != len(missing):
                raise RuntimeError(f"{self.name} returned {len(generated)} results for {len(missing)} prompts")
            fresh = dict(zip(missing, generated))
            self._store(fresh)
            found.update(fresh)
        with self._lock:
            self.misses += len(missing)
            self.hits += len(prompts) - len(missing)
        return [list(found[key]) for key in keys]

    def __len__(self) -> int:
        """Requests stored."""
        with self._lock:
            return self._connection.execute("SELECT count(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _load(self, keys: set[str]) -> dict[str, list[Generation]]:
        found: dict[str, list[Generation]] = {}
        ordered = sorted(keys)
        with self._lock:
            for start in range(0, len(ordered), 500):  # SQLite caps the number of bound variables
                chunk = ordered[start : start + 500]
                rows = self._connection.execute(
                    f"SELECT key, generations FROM generations WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                for key, value in rows:
                    found[key] = [Generation(**item) for item in json.loads(value)]
        return found

    def _store(self, generations: dict[str, list[Generation]]) -> None:
        name = self.name
        rows = [
            # vars() of a flat frozen dataclass is asdict() without its deep copy: the same JSON.
            (key, name, json.dumps([vars(generation) for generation in row]))
            for key, row in generations.items()
        ]
        with self._lock:
            with self._connection:  # one transaction: the whole call is stored or none of it
                self._connection.execute("BEGIN")
                self._connection.executemany(
                    "INSERT OR REPLACE INTO generations (key, policy, generations) VALUES (?, ?, ?)", rows
                )
