"""A Policy backed by a local transformers causal LM (by default the embedded model), on CPU.

Sampling runs in our own loop over the KV cache rather than `model.generate`, so that each
sample draws from its own random stream and stop strings end a sample the moment they appear.

Chat prompts (`tasks.prompts.ChatPrompt`) are rendered with the model's own chat template and
tokenized as they are: the template already wrote the special tokens.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.records import Generation, SamplingParams
from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR
from tasks.prompts import Prompt, prompt_key, rendered

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence load reports and progress bars (a PRM's missing classifier head is expected)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def sample_seed(seed: int, prompt: str, sample_index: int) -> int:
    """The seed of one sample's random stream: it depends on that sample's inputs only, so a
    prompt gets the same samples whichever other prompts share its call or batch.

    >>> sample_seed(0, "Q", 1) == sample_seed(0, "Q", 1) != sample_seed(0, "Q", 2)
    True
    """
    digest = hashlib.sha256(f"{seed}\0{sample_index}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_params(n: int, params: SamplingParams) -> None:
    """Fail fast on sampling settings that have no meaning."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if params.temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {params.top_p}")
    if params.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {params.max_new_tokens}")
    if any(not stop for stop in params.stop):
        raise ValueError("stop strings must be non-empty")


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop string starts in `text`, or None.

    >>> first_stop("a\\nStep 2: b", ["Step", "\\n"])
    1
    >>> first_stop("abc", ["x"]) is None
    True
    """
    found = [index for index in (text.find(stop) for stop in stops) if index >= 0]
    return min(found) if found else None


def next_tokens(logits: torch.Tensor, params: SamplingParams, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row: argmax at temperature 0, otherwise a draw from the tempered, nucleus-
    filtered distribution, using row `i`'s own generator so rows never share randomness."""
    import torch

    if params.temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1:
        probabilities = nucleus(probabilities, params.top_p)
    cumulative = probabilities.cumsum(dim=-1)
    uniforms = torch.cat([torch.rand(1, generator=generator) for generator in generators])
    draws = (uniforms * cumulative[:, -1]).unsqueeze(-1)
    chosen = torch.searchsorted(cumulative, draws, right=True).squeeze(-1)
    return chosen.clamp(max=logits.shape[-1] - 1)


def nucleus(probabilities: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability reaches `top_p` (unnormalised).

    >>> import torch
    >>> nucleus(torch.tensor([[0.1, 0.6, 0.3]]), 0.8).tolist()
    [[0.0, 0.6000000238418579, 0.30000001192092896]]
    """
    import torch

    ordered, order = probabilities.sort(dim=-1, descending=True)
    mass_before = ordered.cumsum(dim=-1) - ordered
    ordered = ordered.masked_fill(mass_before >= top_p, 0.0)
    return torch.zeros_like(probabilities).scatter(-1, order, ordered)


@dataclass
class _Row:
    """One sample being written."""

    budget: int
    tokens: list[int] = field(default_factory=list)
    result: Generation | None = None


class TransformersPolicy:
    """Samples from a causal LM saved with `save_pretrained` in a local directory.

    The model loads on the first `generate`, so building a policy costs nothing.
    """

    def __init__(self, path: Path = EMBEDDED_POLICY_DIR, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._path = Path(path)
        self._batch_size = batch_size
        self._model: PreTrainedModel | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def name(self) -> str:
        return f"transformers:{self._path}"

    def generate(self, prompts: Sequence[Prompt], n: int, params: SamplingParams) -> list[list[Generation]]:
        """`n` continuations per prompt. Sample `i` of a prompt is seeded from (params.seed,
        prompt, i), so the same inputs always give the same output."""
        check_params(n, params)
        prompts_per_batch = max(1, self._batch_size // n)
        results: list[list[Generation]] = []
        for start in range(0, len(prompts), prompts_per_batch):
            results.extend(self._generate_group(prompts[start : start + prompts_per_batch], n, params))
        return results

    def context_length(self) -> int:
        """The model's context window in tokens (prompt plus continuation)."""
        return int(self._load()[0].config.max_position_embeddings)

    def count_prompt_tokens(self, prompts: Sequence[Prompt]) -> list[int]:
        return [len(ids) for ids in self._encode(prompts)]

    def _encode(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Token ids of each prompt; a chat prompt rendered with the chat template, adding no special tokens."""
        tokenizer = self._load()[1]
        encoded = []
        for prompt in prompts:
            text, is_chat = rendered(tokenizer, prompt)
            encoded.append(tokenizer(text, add_special_tokens=not is_chat)["input_ids"])
        return encoded

    def _load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        if self._model is None or self._tokenizer is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            if not (self._path / "config.json").is_file():
                raise FileNotFoundError(
                    f"no model at {self._path}: train one with "
                    "tasks.policies.embedded_model.train_embedded_policy, or pass the directory of a saved model"
                )
            with quiet_transformers():
                self._tokenizer = AutoTokenizer.from_pretrained(self._path)
                self._model = AutoModelForCausalLM.from_pretrained(self._path).eval()
            self._tokenizer.padding_side = "left"
        return self._model, self._tokenizer

    def _generate_group(self, prompts: Sequence[Prompt], n: int, params: SamplingParams) -> list[list[Generation]]:
        """Sample n continuations of each prompt in one left-padded batch.

        Each prompt (the shared prefix of its n samples) runs through the model once; its KV
        cache is then repeated for the n samples, so a prefix never costs n forward passes.
        Finished samples leave the batch, so the longest one does not hold up the rest.
        """
        import torch

        model, tokenizer = self._load()
        encoded = tokenizer.pad({"input_ids": self._encode(prompts)}, padding=True, return_tensors="pt")
        mask = encoded["attention_mask"]
        rows = [_Row(budget=self._budget(int(length), params)) for length in mask.sum(dim=-1) for _ in range(n)]
        generators = [
            torch.Generator().manual_seed(sample_seed(params.seed, prompt_key(prompt), index))
            for prompt in prompts
            for index in range(n)
        ]
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        with torch.inference_mode():
            output = model(input_ids=encoded["input_ids"], attention_mask=mask, position_ids=positions, use_cache=True)
            cache = output.past_key_values
            if n > 1:
                cache.batch_repeat_interleave(n)
            logits = output.logits[:, -1, :].repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            positions = positions[:, -1:].repeat_interleave(n, dim=0)
            active = list(range(len(rows)))
            while True:
                chosen = next_tokens(logits, params, [generators[index] for index in active])
                for index, token in zip(active, chosen.tolist()):
                    self._advance(rows[index], token, params, tokenizer)
                still = [position for position, index in enumerate(active) if rows[index].result is None]
                if not still:
                    break
                if len(still) < len(active):
                    keep = torch.tensor(still)
                    cache.batch_select_indices(keep)
                    mask, positions, chosen = mask[keep], positions[keep], chosen[keep]
                    active = [active[position] for position in still]
                inputs = chosen.unsqueeze(-1)
                mask = torch.cat([mask, torch.ones_like(inputs)], dim=-1)
                positions = positions + 1
                output = model(
                    input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
                )
                cache = output.past_key_values
                logits = output.logits[:, -1, :]
        return [[rows[prompt * n + index].result for index in range(n)] for prompt in range(len(prompts))]

    def _budget(self, prompt_tokens: int, params: SamplingParams) -> int:
        """New tokens a prompt may have: max_new_tokens, capped by the model's context window."""
        context = self._load()[0].config.max_position_embeddings
        if prompt_tokens >= context:
            raise ValueError(f"a prompt has {prompt_tokens} tokens; the model's context is {context}")
        return min(params.max_new_tokens, context - prompt_tokens)

    @staticmethod
    def _advance(row: _Row, token: int, params: SamplingParams, tokenizer: PreTrainedTokenizerBase) -> None:
        """Append one token to a sample and finish it at end-of-sequence, a stop string or its budget."""
        row.tokens.append(token)
        if token == tokenizer.eos_token_id:
            row.result = Generation(tokenizer.decode(row.tokens[:-1]), len(row.tokens), "stop")
            return
        if params.stop:  # decoding every token costs time: only when a stop string can end the sample
            text = tokenizer.decode(row.tokens)
            stop_at = first_stop(text, params.stop)
            if stop_at is not None:
                row.result = Generation(text[:stop_at], len(row.tokens), "stop")
                return
        if len(row.tokens) >= row.budget:
            row.result = Generation(tokenizer.decode(row.tokens), len(row.tokens), "length")
