"""A dataset version's Parquet export as typed examples, and what each kind of model learns from them.

Training consumes datasets; it does not prepare them. The columns read here are the stepwise
export's (tasks/dataset.py): prompt, completions, labels, soft_labels, is_correct, ids, variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from schemas.errors import UserError
from tasks.processbench import ProcessBenchRow

ORIGINAL = "original"
REQUIRED_COLUMNS = ("prompt", "completions", "labels", "soft_labels", "is_correct", "problem_id", "solution_id")


class DatasetFileError(UserError, FileNotFoundError):
    """A dataset version's files are missing or lack columns; the message says which."""


@dataclass(frozen=True)
class StepwiseExample:
    solution_id: str
    problem_id: str
    prompt: str
    steps: tuple[str, ...]
    labels: tuple[bool, ...]
    soft_labels: tuple[float, ...]
    is_correct: bool
    variant: str = ORIGINAL


def read_split(dataset_path: str | Path, split: str) -> list[StepwiseExample]:
    """The rows of `train.parquet` or `test.parquet`, in file order; an absent split is empty."""
    path = Path(dataset_path) / f"{split}.parquet"
    if not Path(dataset_path).is_dir():
        raise DatasetFileError(f"no dataset folder at {dataset_path}: was the data directory moved?")
    if not path.exists():
        return []
    frame = pl.read_parquet(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise DatasetFileError(f"{path} lacks column(s) {', '.join(missing)}: rebuild it with prmforge generate")
    if "variant" not in frame.columns:
        frame = frame.with_columns(variant=pl.lit(ORIGINAL))
    return examples_from_frame(frame)


def examples_from_frame(frame: pl.DataFrame) -> list[StepwiseExample]:
    return [
        StepwiseExample(
            solution_id=row["solution_id"], problem_id=row["problem_id"], prompt=row["prompt"],
            steps=tuple(row["completions"]), labels=tuple(bool(label) for label in row["labels"]),
            soft_labels=tuple(float(q) for q in row["soft_labels"]), is_correct=bool(row["is_correct"]),
            variant=row["variant"],
        )
        for row in frame.iter_rows(named=True)
    ]


def originals(examples: Sequence[StepwiseExample]) -> list[StepwiseExample]:
    """Sampled solutions only: augmented variants repeat them and must not be counted twice."""
    return [example for example in examples if example.variant == ORIGINAL]


def targets(example: StepwiseExample, kind: str, label_kind: str) -> list[float | None]:
    """What the model learns at each step's separator; None = no loss there.

    A PRM learns every step (the bool label, or the MC estimate q for soft labels); the ORM
    baseline learns only whether the final answer is right, at the last step.

    >>> example = StepwiseExample("s", "p", "Q", ("a", "b"), (True, False), (0.75, 0.0), False)
    >>> targets(example, "prm", "hard"), targets(example, "prm", "soft"), targets(example, "orm", "hard")
    ([1.0, 0.0], [0.75, 0.0], [None, 0.0])
    """
    if kind == "orm":
        return [None] * (len(example.steps) - 1) + [1.0 if example.is_correct else 0.0]
    if label_kind == "soft":
        return list(example.soft_labels)
    return [1.0 if label else 0.0 for label in example.labels]


def first_error(labels: Sequence[bool]) -> int:
    """The 0-based index of the first step labelled wrong, -1 if none.

    >>> first_error([True, True, False, True]), first_error([True]), first_error([False])
    (2, -1, 0)
    """
    return next((index for index, label in enumerate(labels) if not label), -1)


def processbench_rows(examples: Sequence[StepwiseExample]) -> list[ProcessBenchRow]:
    """A dataset split in ProcessBench form: the first step labelled wrong, or -1 (originals only)."""
    return [
        ProcessBenchRow(example.solution_id, example.prompt, example.steps, first_error(example.labels))
        for example in originals(examples)
    ]
