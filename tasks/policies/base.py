"""The one interface every policy backend implements: prompts in, n sampled continuations out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from schemas.errors import UserError
from schemas.records import Generation, SamplingParams

if TYPE_CHECKING:
    from schemas.records import Problem
    from tasks.prompts import Prompt, PromptFormat


class PolicyCannotSolve(UserError, ValueError):
    """The policy cannot do this kind of problem or prompt at all (the simulated policy given GSM8K
    questions or a chat prompt); said in one line before anything is written."""


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

    Optional abilities, read through the functions below (wrappers that keep their policy as
    `inner` are looked through): `context_length()` and `count_prompt_tokens(prompts)` say whether
    a prompt fits (None where the backend cannot tell), and `cannot_solve(problems, prompt_format)`
    names what it cannot do at all.

    A prompt is text, or a `tasks.prompts.ChatPrompt` that the backend renders with its chat
    template (transformers and vLLM locally, an OpenAI-compatible server on its side).
    """

    @property
    def name(self) -> str:
        """The spec that identifies this policy in provenance columns (e.g. `transformers:PATH`)."""
        ...

    def generate(
        self, prompts: Sequence[Prompt], n: int, params: SamplingParams
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


def layers(policy: object) -> Iterator[object]:
    """The policy, then what each wrapper keeps as `inner` (the cache, the timeout), outermost first."""
    seen = 0
    while policy is not None and seen < 16:
        yield policy
        policy, seen = getattr(policy, "inner", None), seen + 1


def engine_restarts(policy: object) -> list:
    """The engine restarts a policy has survived (`restarts`, e.g. VLLMPolicy's), looking through
    wrappers that keep their policy as `inner`; empty for policies without an engine."""
    for layer in layers(policy):
        restarts = getattr(layer, "restarts", None)
        if isinstance(restarts, list):
            return list(restarts)
    return []


def _ability(policy: object, name: str):
    return next((getattr(layer, name) for layer in layers(policy) if callable(getattr(layer, name, None))), None)


def context_length(policy: object) -> int | None:
    """The longest sequence (prompt plus continuation) the policy takes, in tokens; None if it cannot tell."""
    ability = _ability(policy, "context_length")
    return ability() if ability else None


def count_prompt_tokens(policy: object, prompts: Sequence[Prompt]) -> list[int] | None:
    """How many tokens each prompt is to the policy; None if it cannot tell."""
    ability = _ability(policy, "count_prompt_tokens")
    return ability(list(prompts)) if ability and prompts else ([] if ability else None)


def cannot_solve(policy: object, problems: Sequence[Problem], prompt_format: PromptFormat) -> str | None:
    """Why the policy cannot do these problems in this format at all, or None."""
    ability = _ability(policy, "cannot_solve")
    return ability(problems, prompt_format) if ability else None
