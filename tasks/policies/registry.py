"""Turn a policy spec from config or the command line into a Policy."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tasks.policies.base import Policy

SPEC_HELP = (
    "'embedded' (the project's own model), 'transformers:PATH' (a local HF model directory) or "
    "'simulated[:error_rate=0.15,recovery_rate=0.1,seed=0]' (a program with known mistakes)"
)


class PolicySpecError(ValueError):
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
