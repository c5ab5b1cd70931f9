"""The one interface every policy backend implements: prompts in, n sampled continuations out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from schemas.errors import UserError
from schemas.records import Generation, SamplingParams


class PolicyUnavailable(UserError, RuntimeError):
    """The policy cannot serve the run: a server down, failing or refusing, or an engine that did
    not start. The message is one line that names it."""


DEFAULT_PROMPTS_PER_CALL = 8


@runtime_checkable
class Policy(Protocol):
    """Something that can sample text. Rollout code receives one; it never builds a client.

    A backend may also say how many prompts a caller should put in one `generate` call
    (`prompts_per_call`, read through the function of that name): an engine that batches and
    caches prefixes itself wants many at once, a model run in this process only what fits its batch.
    """

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


def prompts_per_call(policy: Policy) -> int:
    """How many prompts `policy` wants per `generate` call (DEFAULT_PROMPTS_PER_CALL if it does not say)."""
    return int(getattr(policy, "prompts_per_call", DEFAULT_PROMPTS_PER_CALL))


def engine_restarts(policy: object) -> list:
    """The engine restarts a policy has survived (`restarts`, e.g. VLLMPolicy's), looking through
    wrappers that keep their policy as `inner`; empty for policies without an engine."""
    seen = 0
    while policy is not None and seen < 16:
        restarts = getattr(policy, "restarts", None)
        if isinstance(restarts, list):
            return list(restarts)
        policy, seen = getattr(policy, "inner", None), seen + 1
    return []
