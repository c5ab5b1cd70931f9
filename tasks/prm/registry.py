"""Reading and writing the models, evaluations and decisions tables (and finding dataset versions).

Callers hold the connection, the writer lock and the transaction; these functions only read or
stage rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from schemas.errors import UserError
from schemas.tables import DATASETS, DECISIONS, EVALUATIONS, MODELS
from tasks.ids import content_id
from warehouse.writes import insert_new, read_table


class RegistryError(UserError, LookupError):
    """A dataset version or model that is not there; the message says what exists."""


@dataclass(frozen=True)
class DatasetRef:
    dataset_id: str
    version: int
    snapshot_id: int
    path: str
    labeler: str
    test_fraction: float


@dataclass(frozen=True)
class ModelRef:
    model_id: str
    version: int | None
    path: str
    base: str | None = None
    dataset_version: int | None = None
    dataset_snapshot: int | None = None
    label_kind: str | None = None
    kind: str = "prm"
    metrics: dict | None = None
    promoted: bool = False


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def find_dataset(connection: duckdb.DuckDBPyConnection, version: int | None = None) -> DatasetRef:
    """A dataset version, or the latest when `version` is None."""
    frame = read_table(connection, DATASETS).sort("version")
    if frame.is_empty():
        raise RegistryError("the warehouse has no dataset yet: run `prmforge generate` first")
    if version is None:
        row = frame.row(-1, named=True)
    else:
        chosen = frame.filter(frame["version"] == version)
        if chosen.is_empty():
            raise RegistryError(f"no dataset version {version}: versions are {', '.join(map(str, frame['version']))}")
        row = chosen.row(0, named=True)
    return DatasetRef(row["dataset_id"], row["version"], row["snapshot_id"], row["path"], row["labeler"], row["test_fraction"])


def _model_ref(row: dict) -> ModelRef:
    return ModelRef(
        model_id=row["model_id"], version=row["version"], path=row["path"], base=row["base"],
        dataset_version=row["dataset_version"], dataset_snapshot=row["dataset_snapshot"],
        label_kind=row["label_kind"], kind=row["kind"], metrics=json.loads(row["metrics_json"] or "{}"),
        promoted=bool(row["promoted"]),
    )


def list_models(connection: duckdb.DuckDBPyConnection) -> list[ModelRef]:
    return [_model_ref(row) for row in read_table(connection, MODELS).sort("version").iter_rows(named=True)]


def find_model(connection: duckdb.DuckDBPyConnection | None, reference: str) -> ModelRef:
    """A registered model by id, id prefix, version ('3' or 'v3'), 'latest' (the newest PRM), 'promoted',
    or any directory holding a model."""
    models = list_models(connection) if connection is not None else []
    text = reference.strip()
    if text in ("latest", "promoted"):
        chosen = [model for model in models if (model.kind == "prm" if text == "latest" else model.promoted)]
        if chosen:
            return chosen[-1]
        raise RegistryError(f"no {text} model: run `prmforge train`" + (" or `prmforge nightly`" if text == "promoted" else ""))
    number = text[1:] if text[:1] in "vV" else text
    for model in models:
        if model.model_id == text or (number.isdigit() and model.version == int(number)):
            return model
    prefixed = [model for model in models if len(text) >= 6 and model.model_id.startswith(text)]
    if len(prefixed) == 1:
        return prefixed[0]
    path = Path(text).expanduser()
    if (path / "config.json").exists():
        registered = [model for model in models if Path(model.path).resolve() == path.resolve()]
        return registered[0] if registered else ModelRef(model_id=content_id("unregistered", path.resolve()), version=None, path=str(path))
    known = ", ".join(f"v{model.version}" for model in models) or "none yet (run `prmforge train`)"
    raise RegistryError(f"no model '{reference}': registered models are {known}; or pass a model directory")


def promoted_model(connection: duckdb.DuckDBPyConnection) -> ModelRef | None:
    return next((model for model in list_models(connection) if model.promoted), None)


def find_orm(connection: duckdb.DuckDBPyConnection, dataset_version: int | None, base: str | None) -> ModelRef | None:
    """The latest ORM baseline trained on the same dataset version from the same base."""
    matches = [
        model for model in list_models(connection)
        if model.kind == "orm" and model.dataset_version == dataset_version and model.base == base
    ]
    return matches[-1] if matches else None


def next_version(connection: duckdb.DuckDBPyConnection) -> int:
    return int(connection.execute("SELECT coalesce(max(version), 0) FROM models").fetchone()[0]) + 1


def register_model(connection: duckdb.DuckDBPyConnection, model: ModelRef, run_id: str) -> int:
    row = {
        "model_id": model.model_id, "version": model.version, "path": model.path, "base": model.base,
        "dataset_version": model.dataset_version, "dataset_snapshot": model.dataset_snapshot,
        "label_kind": model.label_kind, "kind": model.kind, "metrics_json": json.dumps(model.metrics or {}, sort_keys=True),
        "promoted": False, "created_at": now(), "run_id": run_id,
    }
    return insert_new(connection, MODELS, MODELS.frame([row]))


def promote(connection: duckdb.DuckDBPyConnection, model_id: str) -> None:
    """Make `model_id` the one promoted model."""
    connection.execute("UPDATE models SET promoted = (model_id = ?)", [model_id])


def evaluation_rows(
    model_id: str, evaluation_set: str, kind: str, values: dict[str, tuple[float | None, int]], details: dict, run_id: str
) -> list[dict]:
    """One row per metric; the id hashes model, evaluation set, kind and metric, so reruns add nothing."""
    created = now()
    return [
        {
            "evaluation_id": content_id("evaluation", model_id, evaluation_set, kind, metric),
            "model_id": model_id, "kind": kind, "metric": metric, "value": value, "n": n,
            "details_json": json.dumps(details, sort_keys=True, default=str), "created_at": created, "run_id": run_id,
        }
        for metric, (value, n) in values.items()
    ]


def store_evaluations(connection: duckdb.DuckDBPyConnection, rows: list[dict]) -> int:
    return insert_new(connection, EVALUATIONS, EVALUATIONS.frame(rows))


def decision_row(run_id: str, stage: str, decision: str, reason: str, evidence: dict | None = None) -> dict:
    """A decisions row; `evidence` fills the comparison columns of a promotion decision."""
    return {
        "decision_id": content_id("decision", run_id, stage, decision, reason), "run_id": run_id, "stage": stage,
        "decision": decision, "reason": reason, "created_at": now(), **(evidence or {}),
    }


def store_decisions(connection: duckdb.DuckDBPyConnection, rows: list[dict]) -> int:
    return insert_new(connection, DECISIONS, DECISIONS.frame(rows))
