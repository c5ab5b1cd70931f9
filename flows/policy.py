"""The policy-training flow: trains the embedded GPT-2-shaped policy on the synthetic corpus."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import stage


@task(name="train-embedded-policy", cache_policy=NO_CACHE)
def train_embedded(output: Path, steps: int | None) -> dict:
    from tasks.policies.embedded_model import PolicyTrainConfig, train_embedded_policy

    # A shorter run keeps its warm-up under a tenth of its steps.
    config = PolicyTrainConfig() if steps is None else PolicyTrainConfig(
        steps=steps, warmup_steps=min(PolicyTrainConfig.warmup_steps, steps // 10)
    )
    with stage("training the embedded policy", config.steps) as advance:
        return dict(train_embedded_policy(output, config, progress=lambda step, loss: advance(1)))


@flow(name="prmforge-policy-train")
def train_policy_flow(output: Path | None = None, steps: int | None = None) -> dict:
    from tasks.policies.embedded_model import EMBEDDED_POLICY_DIR

    return train_embedded(output or EMBEDDED_POLICY_DIR, steps)
