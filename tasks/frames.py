"""Records to table frames, adding the provenance columns every generated row carries."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Sequence

import polars as pl

from schemas.records import Node, Problem, QuarantinedRow, Rollout, SamplingParams, StepLabel
from schemas.tables import NODES, PROBLEMS, QUARANTINE, ROLLOUTS, STEP_LABELS, Table
from tasks.gates import GateResult
from tasks.ids import content_id
from tasks.labelers.base import LabelResult


def _frame(table: Table, records: Iterable[object], **extra: object) -> pl.DataFrame:
    """The table's columns, built in bulk from the records' fields (a dataclass's or a dict's;
    a missing one is null), with each `extra` value in every row."""
    records = list(records)
    if not records:
        return table.empty_frame()
    columns = {
        name: [extra[name]] * len(records) if name in extra else _column(records, name)
        for name in table.column_names
    }
    return pl.DataFrame(columns, schema=table.polars_schema())


def _column(records: list, name: str) -> list:
    kind = type(records[0])
    if not (issubclass(kind, dict) or dataclasses.is_dataclass(kind)) or any(type(r) is not kind for r in records):
        return [record.get(name) if isinstance(record, dict) else getattr(record, name, None) for record in records]
    if issubclass(kind, dict):
        return [record.get(name) for record in records]
    if name not in {field.name for field in dataclasses.fields(kind)}:
        return [None] * len(records)
    return list(map(operator.attrgetter(name), records))


def problems_frame(problems: Sequence[Problem], run_id: str) -> pl.DataFrame:
    rows = [
        {**vars(p), "reference_steps": list(p.reference_steps)} for p in problems
    ]
    return _frame(PROBLEMS, rows, run_id=run_id)


def quarantine_frame(rows: Sequence[QuarantinedRow], run_id: str) -> pl.DataFrame:
    keyed = [
        {**dataclasses.asdict(row), "quarantine_id": content_id("quarantine", row.source_file, row.source_row, row.raw, row.reason)}
        for row in rows
    ]
    return _frame(QUARANTINE, keyed, run_id=run_id)


def nodes_frame(nodes: Sequence[Node], policy: str, params: SamplingParams, run_id: str) -> pl.DataFrame:
    return _frame(NODES, nodes, policy=policy, temperature=params.temperature, seed=params.seed, run_id=run_id)


def rollouts_frame(rollouts: Sequence[Rollout], policy: str, params: SamplingParams, run_id: str) -> pl.DataFrame:
    return _frame(ROLLOUTS, rollouts, policy=policy, temperature=params.temperature, seed=params.seed, run_id=run_id)


def judgements_frame(result: LabelResult, policy: str, run_id: str) -> pl.DataFrame:
    """A judge's raw prompts and answers as rollouts rows (labeler 'judge'), so every judge label
    has its evidence in the warehouse; unreadable answers are kept too. Empty for other labellers.

    node_id is the solution's last step (the judge read the path through it), completion the raw
    answer, final_answer what was read ("3", "none", or null when unreadable), is_correct null.
    """
    from tasks.labelers.judge import LABELER, JudgeResult

    if not isinstance(result, JudgeResult):
        return ROLLOUTS.empty_frame()
    rows = [
        {
            "rollout_id": content_id("rollout", judgement.terminal_node_id, LABELER, result.params.seed, 0, judgement.prompt),
            "node_id": judgement.terminal_node_id,
            "labeler": LABELER,
            "sample_index": 0,
            "completion": judgement.output,
            "final_answer": judgement.answer,
            "is_correct": None,
            "generated_tokens": judgement.generated_tokens,
            "finish_reason": judgement.finish_reason,
            "prompt": judgement.prompt,
        }
        for judgement in result.judgements
    ]
    return _frame(ROLLOUTS, rows, policy=policy, temperature=result.params.temperature, seed=result.params.seed,
                  run_id=run_id)


def labels_frame(labels: Sequence[StepLabel], run_id: str) -> pl.DataFrame:
    return _frame(STEP_LABELS, labels, run_id=run_id)


def gate_rows(results: Sequence[GateResult], run_id: str, checked_at: object) -> list[dict]:
    return [
        {
            **dataclasses.asdict(result),
            "result_id": content_id("dq", run_id, result.suite, result.expectation, result.success, result.unexpected_count),
            "run_id": run_id,
            "checked_at": checked_at,
        }
        for result in results
    ]
