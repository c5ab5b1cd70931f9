"""Whether seed problems suit the policy: what it cannot do at all stops the run in one line; a
problem whose prompt does not fit its context goes to quarantine with the reason, and the rest run.

A problem fits when its prompt and a whole solution (`max_new_tokens`) fit the policy's context:
a prompt that leaves less room would be cut off mid-solution, and its labels would measure the
context, not the steps. A backend that cannot count tokens (the simulated policy, a server without
vLLM's `/tokenize`) admits every problem; the backend itself refuses what is too long.

During labelling a prefix can still fill the context (a solution that ran to the end of its
budget, rebuilt with its separators): `prompts_without_room` finds those, and the labeller
records that no completion can continue them instead of sending them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.records import Problem, QuarantinedRow
from tasks.ingest import RAW_KEEP_CHARS, IngestResult
from tasks.policies.base import PolicyCannotSolve, cannot_solve, context_length, count_prompt_tokens
from tasks.prompts import ChatPrompt, Prompt, PromptFormat

# No tokenizer makes more tokens of a text than it has UTF-8 bytes, beyond a few it adds (BOS,
# a dummy prefix): a text this much shorter than the context fits without counting. A chat
# template adds its markers around every message and may add a default system text of its own.
_ADDED_TOKENS_MARGIN = 8
_CHAT_TEMPLATE_MARGIN, _CHAT_MESSAGE_MARGIN = 256, 16


@dataclass(frozen=True)
class Overflow:
    """A prompt that does not fit: its tokens, the policy's context and the room it needed."""

    tokens: int
    context: int
    needed: int = 0


def refuse_unsolvable(policy: object, problems: Sequence[Problem], prompt_format: PromptFormat) -> None:
    """Raise PolicyCannotSolve, one line, when the policy cannot do these problems at all."""
    reason = cannot_solve(policy, problems, prompt_format)
    if reason:
        raise PolicyCannotSolve(reason)


def prompts_without_room(policy: object, prompts: Sequence[Prompt], needed: int = 1) -> dict[int, Overflow]:
    """The prompts (by index) that leave fewer than `needed` tokens of the policy's context;
    empty when the policy cannot tell."""
    context = context_length(policy)
    if not context or not prompts:
        return {}
    unsure = [index for index, prompt in enumerate(prompts) if most_tokens(prompt) + needed > context]
    counts = count_prompt_tokens(policy, [prompts[index] for index in unsure]) if unsure else []
    if counts is None:
        return {}
    return {
        index: Overflow(tokens, context, needed)
        for index, tokens in zip(unsure, counts, strict=True)
        if tokens + needed > context
    }


def most_tokens(prompt: Prompt) -> int:
    """An upper bound on the tokens a prompt can take, from its UTF-8 size (no tokenizer needed).

    >>> most_tokens("abc"), most_tokens(ChatPrompt((("user", "abc"),), "d"))
    (11, 292)
    """
    if isinstance(prompt, str):
        return len(prompt.encode()) + _ADDED_TOKENS_MARGIN
    contents = sum(len(content.encode()) for _, content in prompt.messages) + len(prompt.reply.encode())
    return contents + _CHAT_TEMPLATE_MARGIN + _CHAT_MESSAGE_MARGIN * (len(prompt.messages) + 1)


def admit_problems(
    policy: object, loaded: IngestResult, prompt_format: PromptFormat, max_new_tokens: int, policy_name: str
) -> IngestResult:
    """The problems whose prompt and a whole solution fit the policy's context; the others join
    the quarantined rows, each with the policy, its prompt's tokens and the limit."""
    prompts = [prompt_format.prompt(problem) for problem in loaded.problems]
    overflows = prompts_without_room(policy, prompts, needed=max_new_tokens)
    if not overflows:
        return loaded
    kept, quarantined = [], list(loaded.quarantined)
    for index, problem in enumerate(loaded.problems):
        overflow = overflows.get(index)
        if overflow is None:
            kept.append(problem)
            continue
        quarantined.append(QuarantinedRow(
            source_file=problem.source_file or problem.source,
            source_row=problem.source_row,
            raw=json.dumps({"question": problem.question, "answer": problem.answer}, ensure_ascii=False)[:RAW_KEEP_CHARS],
            reason=too_long_reason(policy_name, overflow),
        ))
    return IngestResult(kept, quarantined)


def too_long_reason(policy_name: str, overflow: Overflow) -> str:
    """
    >>> too_long_reason("transformers:m", Overflow(315, 256, 160))
    "prompt does not fit the policy's context: policy transformers:m, prompt 315 tokens + 160 new tokens (max_new_tokens) > context 256 tokens"
    """
    return (f"prompt does not fit the policy's context: policy {policy_name}, prompt {overflow.tokens} tokens "
            f"+ {overflow.needed} new tokens (max_new_tokens) > context {overflow.context} tokens")
