"""Expectation suites, one per table or export, beside the table definitions they guard.

Each expectation has a name a person can search for in dq_results. The suites are plain data;
tasks/gates.py turns them into Great Expectations objects and runs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Expectation:
    name: str  # stable, human-readable id stored in dq_results
    kind: str  # Great Expectations expectation class name
    kwargs: dict = field(default_factory=dict)


def problems_suite() -> list[Expectation]:
    return [
        Expectation("problem_id_unique", "ExpectColumnValuesToBeUnique", {"column": "problem_id"}),
        Expectation("question_present", "ExpectColumnValuesToNotBeNull", {"column": "question"}),
        Expectation("question_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "question", "regex": r"\S"}),
        Expectation("answer_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "answer", "regex": r"\S"}),
    ]


def nodes_suite(known_node_ids: Iterable[str], known_problem_ids: Iterable[str]) -> list[Expectation]:
    return [
        Expectation("node_id_unique", "ExpectColumnValuesToBeUnique", {"column": "node_id"}),
        Expectation("step_not_empty", "ExpectColumnValuesToMatchRegex", {"column": "step_text", "regex": r"\S"}),
        Expectation("step_present", "ExpectColumnValuesToNotBeNull", {"column": "step_text"}),
        Expectation("no_orphan_node", "ExpectColumnValuesToBeInSet",
                    {"column": "parent_id", "value_set": sorted(set(known_node_ids))}),
        Expectation("node_problem_known", "ExpectColumnValuesToBeInSet",
                    {"column": "problem_id", "value_set": sorted(set(known_problem_ids))}),
        Expectation("depth_positive", "ExpectColumnValuesToBeBetween", {"column": "depth", "min_value": 1}),
    ]


def step_labels_suite(known_node_ids: Iterable[str]) -> list[Expectation]:
    return [
        Expectation("label_id_unique", "ExpectColumnValuesToBeUnique", {"column": "label_id"}),
        Expectation("q_in_unit_interval", "ExpectColumnValuesToBeBetween",
                    {"column": "q", "min_value": 0.0, "max_value": 1.0}),
        Expectation("q_present", "ExpectColumnValuesToNotBeNull", {"column": "q"}),
        Expectation("n_correct_at_most_n", "ExpectColumnPairValuesAToBeGreaterThanB",
                    {"column_A": "n", "column_B": "n_correct", "or_equal": True}),
        Expectation("n_correct_non_negative", "ExpectColumnValuesToBeBetween",
                    {"column": "n_correct", "min_value": 0}),
        Expectation("label_node_known", "ExpectColumnValuesToBeInSet",
                    {"column": "node_id", "value_set": sorted(set(known_node_ids))}),
    ]


def rollouts_suite(known_node_ids: Iterable[str]) -> list[Expectation]:
    return [
        Expectation("rollout_id_unique", "ExpectColumnValuesToBeUnique", {"column": "rollout_id"}),
        Expectation("rollout_node_known", "ExpectColumnValuesToBeInSet",
                    {"column": "node_id", "value_set": sorted(set(known_node_ids))}),
    ]


def dataset_suite() -> list[Expectation]:
    """Runs on the stepwise export: one row per solution, with derived check columns."""
    return [
        Expectation("solution_id_unique", "ExpectColumnValuesToBeUnique", {"column": "solution_id"}),
        Expectation("labels_aligned_with_steps", "ExpectColumnPairValuesToBeEqual",
                    {"column_A": "n_completions", "column_B": "n_labels"}),
        Expectation("soft_labels_aligned_with_steps", "ExpectColumnPairValuesToBeEqual",
                    {"column_A": "n_completions", "column_B": "n_soft_labels"}),
        Expectation("solution_has_steps", "ExpectColumnValuesToBeBetween",
                    {"column": "n_completions", "min_value": 1}),
        Expectation("no_problem_in_two_splits", "ExpectColumnValuesToBeBetween",
                    {"column": "splits_of_problem", "min_value": 1, "max_value": 1}),
        Expectation("split_known", "ExpectColumnValuesToBeInSet",
                    {"column": "split", "value_set": ["train", "test"]}),
    ]


def verdicts_suite(known_node_ids: Iterable[str]) -> list[Expectation]:
    return [
        Expectation("verdict_id_unique", "ExpectColumnValuesToBeUnique", {"column": "verdict_id"}),
        Expectation("verdict_three_valued", "ExpectColumnValuesToBeInSet",
                    {"column": "verdict", "value_set": ["valid", "invalid", "unknown"]}),
        Expectation("verdict_node_known", "ExpectColumnValuesToBeInSet",
                    {"column": "node_id", "value_set": sorted(set(known_node_ids))}),
    ]


def consensus_suite() -> list[Expectation]:
    return [
        Expectation("decision_id_unique", "ExpectColumnValuesToBeUnique", {"column": "decision_id"}),
        Expectation("dropped_sample_has_reason", "ExpectColumnValuesToNotBeNull", {"column": "reason"}),
    ]
