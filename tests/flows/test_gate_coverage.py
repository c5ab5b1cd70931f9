"""Each kind of corruption, injected into a real run, is caught by a named expectation.

The run fails, and nothing of it is published: no data rows, no dataset version, no export.
"""

from __future__ import annotations

import polars as pl
import pytest

import flows.generate as generate_module
import flows.publish as publish_module
from flows.generate import generate_flow
from schemas.config import GenerateConfig
from tasks import frames
from tasks.gates import GateFailed
from warehouse.connection import connect

CONFIG = GenerateConfig(problems=3, samples=3, rollouts=2, seed=1, policy="simulated:error_rate=0.3,seed=1")
# Verdicts and consensus decisions exist only when the run verifies and votes.
VOTING = CONFIG.model_copy(update={"verifiers": ("arith",), "consensus": "default"})
PUBLISHED = ("problems", "nodes", "rollouts", "step_labels", "datasets", "verdicts", "consensus")


def corrupt_frame(monkeypatch, builder: str, corruption):
    original = getattr(frames, builder)
    monkeypatch.setattr(frames, builder, lambda *args, **kwargs: corruption(original(*args, **kwargs)))


def corrupt_generate_step(monkeypatch, builder: str, corruption):
    """A frame builder flows.generate imported by name (verdicts_frame, decisions_frame)."""
    original = getattr(generate_module, builder)
    monkeypatch.setattr(generate_module, builder, lambda *args, **kwargs: corruption(original(*args, **kwargs)))


def corrupt_dataset(monkeypatch, corruption):
    original = publish_module.stepwise_rows
    monkeypatch.setattr(
        publish_module, "stepwise_rows",
        lambda *args, **kwargs: (lambda built: (corruption(built[0]), built[1]))(original(*args, **kwargs)),
    )


def first_row(frame: pl.DataFrame, **changes) -> pl.DataFrame:
    return pl.concat([frame.head(1).with_columns(**{k: pl.lit(v) for k, v in changes.items()}), frame.slice(1)], how="vertical_relaxed")


def leak_split(dataset: pl.DataFrame) -> pl.DataFrame:
    """Move one solution of a problem that has several into the other split."""
    problem = dataset.group_by("problem_id").len().filter(pl.col("len") > 1)["problem_id"][0]
    index = dataset["problem_id"].to_list().index(problem)
    splits = dataset["split"].to_list()
    splits[index] = "test" if splits[index] == "train" else "train"
    return dataset.with_columns(split=pl.Series(splits))


CORRUPTIONS = {
    "q_in_unit_interval": lambda mp: corrupt_frame(mp, "labels_frame", lambda f: first_row(f, q=1.5)),
    "n_correct_at_most_n": lambda mp: corrupt_frame(
        mp, "labels_frame", lambda f: f.with_columns(n_correct=pl.col("n") + 1)
    ),
    "no_orphan_node": lambda mp: corrupt_frame(
        mp, "nodes_frame", lambda f: f.with_columns(
            parent_id=pl.when(pl.col("depth") == 2).then(pl.lit("ghost")).otherwise(pl.col("parent_id"))
        )
    ),
    "node_id_unique": lambda mp: corrupt_frame(mp, "nodes_frame", lambda f: pl.concat([f, f.head(1)])),
    "step_not_empty": lambda mp: corrupt_frame(mp, "nodes_frame", lambda f: first_row(f, step_text="   ")),
    "labels_aligned_with_steps": lambda mp: corrupt_dataset(
        mp, lambda d: d.with_columns(labels=pl.col("labels").list.slice(1))
    ),
    "no_problem_in_two_splits": lambda mp: corrupt_dataset(mp, leak_split),
    "rollout_node_known": lambda mp: corrupt_frame(mp, "rollouts_frame", lambda f: first_row(f, node_id="ghost")),
    "verdict_three_valued": lambda mp: corrupt_generate_step(
        mp, "verdicts_frame", lambda f: first_row(f, verdict="probably")
    ),
    "decision_id_unique": lambda mp: corrupt_generate_step(
        mp, "decisions_frame", lambda f: pl.concat([f, f.head(1)])
    ),
}
NEEDS_VOTES = {"verdict_three_valued", "decision_id_unique"}


@pytest.mark.parametrize("expectation", sorted(CORRUPTIONS))
def test_corruption_is_caught_and_nothing_is_published(prefect_harness, warehouse_config, monkeypatch, expectation):
    CORRUPTIONS[expectation](monkeypatch)
    with pytest.raises(GateFailed, match=expectation):
        generate_flow(VOTING if expectation in NEEDS_VOTES else CONFIG, warehouse_config)
    connection = connect(warehouse_config, read_only=True)
    try:
        published = {t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in PUBLISHED}
        failed = {row[0] for row in connection.execute("SELECT expectation FROM dq_results WHERE NOT success").fetchall()}
    finally:
        connection.close()
    assert published == dict.fromkeys(PUBLISHED, 0)
    assert expectation in failed
    exports = warehouse_config.datasets_dir
    assert not exports.exists() or not any(exports.iterdir())
