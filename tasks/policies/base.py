"""The one interface every policy backend implements: prompts in, n sampled continuations out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from schemas.errors import UserError
from schemas.records import Generation, SamplingParams


class PolicyUnavailable(UserError, RuntimeError):
    """The policy cannot serve the run: a server down, failing or refusing, or an engine that did
    not start. The message is one line that names it."""


@runtime_checkable
class Policy(Protocol):
    """Something that can sample text. Rollout code receives one; it never builds a client."""

    @property
    def name(self) -> str:
        """The spec that identifies this policy in provenance columns (e.g. `transformers:PATH`)."""
        ...

    def generate(
        self, prompts: Sequence[str], n: int, params: SamplingParams
    ) -> list[list[Generation]]:
        """For each prompt, `n` continuations (without the prompt text).

        A continuation ends at the end-of-sequence token, at the first stop string in
        `params.stop` (the stop string itself is not included), or at `params.max_new_tokens`.
        The same prompts, n and params (seed included) give the same continuations.
        """
        ...
