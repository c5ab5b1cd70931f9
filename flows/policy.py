"""The policy-training flow: trains the embedded GPT-2-shaped policy on the synthetic corpus."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import announce, stage


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


@task(name="adapt-base", cache_policy=NO_CACHE)
def adapt(base: Path, problems: list, output: Path, settings) -> dict:
    from dataclasses import asdict

    from tasks.prm.adapt import adapt_base

    announce(f"adapting {base.name} to {len(problems)} reference solutions")
    return asdict(adapt_base(base, problems, output, settings))


@flow(name="prmforge-policy-adapt")
def adapt_policy_flow(warehouse, dataset_version: int | None, base: str | None, output: Path, settings) -> dict:
    """Fine-tune a base LM on the reference solutions of a dataset version's training problems
    (tasks/prm/adapt.py), for `prmforge train --base output`."""
    from flows.train import reading
    from tasks.prm.adapt import training_problems
    from tasks.prm.model import resolve_base
    from tasks.prm.registry import find_dataset

    chosen = resolve_base(base)
    with reading(warehouse) as connection:
        dataset = find_dataset(connection, dataset_version)
        problems = training_problems(connection, dataset)
    return {"dataset_version": dataset.version, "base": str(chosen), "output": str(output)} | adapt(
        chosen, problems, output, settings)
