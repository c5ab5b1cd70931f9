"""A deadline around any policy: a backend that hangs stops the run instead of stalling it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from schemas.errors import UserError
from schemas.records import Generation, SamplingParams
from tasks.policies.base import Policy, prompts_per_call


class PolicyTimeout(UserError, RuntimeError):
    """The policy gave no answer in time; the message is one line naming it."""


class TimeoutPolicy:
    """`inner`, with each generate call bounded by `seconds` of wall time.

    The call runs in a daemon thread: an in-process engine cannot be interrupted safely, so a
    hung call is abandoned (the process exits with the run) rather than killed.
    """

    def __init__(self, inner: Policy, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"a policy timeout must be positive, got {seconds}")
        self.inner = inner
        self.seconds = seconds

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def prompts_per_call(self) -> int:
        return prompts_per_call(self.inner)

    def generate(self, prompts: Sequence[str], n: int, params: SamplingParams) -> list[list[Generation]]:
        outcome: dict[str, object] = {}

        def call() -> None:
            try:
                outcome["result"] = self.inner.generate(prompts, n, params)
            except BaseException as error:  # handed to the caller's thread below
                outcome["error"] = error

        worker = threading.Thread(target=call, name="policy-generate", daemon=True)
        worker.start()
        worker.join(self.seconds)
        if worker.is_alive():
            raise PolicyTimeout(
                f"policy {self.name} gave no answer within {self.seconds:g} s for {len(prompts)} prompt(s)"
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]
