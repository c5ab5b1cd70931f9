"""The critic-training flow: a dataset version's train split -> a critic directory (a judge backend).

The critic's directory is named by a content hash of its settings, dataset and base, so a rerun
with the same ones finds it and trains nothing (`critic.json` is written last, after the weights).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.progress import stage
from schemas.config import WarehouseConfig
from tasks.critic import CRITIC_RECORD, CriticConfig
from tasks.ids import content_id
from tasks.prm.registry import DatasetRef, find_dataset


@dataclass
class CriticSummary:
    critic_id: str
    status: str  # "completed" or "already done"
    path: str
    dataset_version: int
    metrics: dict = field(default_factory=dict)

    @property
    def judge_spec(self) -> str:
        """The policy spec that makes this critic the judge labeller's backend."""
        return f"transformers:{self.path}"


@task(name="train-critic", cache_policy=NO_CACHE)
def fit_critic(config: CriticConfig, base: Path, dataset: DatasetRef, output: Path) -> dict:
    from tasks.critic import train_critic
    from tasks.prm.data import read_split

    train = read_split(dataset.path, "train")
    record = {"dataset_version": dataset.version, "dataset_id": dataset.dataset_id,
              "dataset_snapshot": dataset.snapshot_id, "labeler": dataset.labeler, "base": str(base)}
    with stage(f"training the critic ({len(train)} rows of dataset v{dataset.version})", config.steps) as advance:
        return train_critic(base, train, output, config, progress=lambda step, loss: advance(1), record=record)


@flow(name="prmforge-critic-train", log_prints=False)
def critic_flow(config: CriticConfig, warehouse: WarehouseConfig, dataset_version: int | None = None,
                base: str | None = None, output: Path | None = None) -> CriticSummary:
    from flows.train import reading
    from tasks.prm.model import resolve_base

    with reading(warehouse) as connection:
        dataset = find_dataset(connection, dataset_version)
    base_path = resolve_base(base)
    critic_id = content_id("critic", json.dumps(asdict(config), sort_keys=True), dataset.dataset_id, str(base_path.resolve()))
    output = output or warehouse.data_dir / "critics" / critic_id[:16]
    if (output / CRITIC_RECORD).exists():
        record = json.loads((output / CRITIC_RECORD).read_text())
        if record.get("dataset_id") == dataset.dataset_id and record.get("config") == asdict(config):
            return CriticSummary(critic_id, "already done", str(output), dataset.version, record.get("metrics", {}))
    metrics = fit_critic(config, base_path, dataset, output)
    return CriticSummary(critic_id, "completed", str(output), dataset.version, metrics)
