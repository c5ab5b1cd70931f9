"""Every warehouse table, defined once.

A table is a list of typed columns. The DuckDB DDL and the polars schema are both derived from
that one definition, so the warehouse and the in-memory frames can never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# DuckDB type name -> polars dtype. Only the types the tables below use.
_POLARS_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "BIGINT": pl.Int64(),
    "INTEGER": pl.Int32(),
    "DOUBLE": pl.Float64(),
    "BOOLEAN": pl.Boolean(),
    "TIMESTAMP": pl.Datetime("us"),
    "VARCHAR[]": pl.List(pl.String()),
    "BOOLEAN[]": pl.List(pl.Boolean()),
    "DOUBLE[]": pl.List(pl.Float64()),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    doc: str = ""
    # When or where something ran (clock times, durations, absolute paths): equal runs differ
    # here by nature, so content fingerprints leave these columns out.
    volatile: bool = False

    @property
    def polars_type(self) -> pl.DataType:
        return _POLARS_TYPES[self.type]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: str | None
    doc: str = ""

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def polars_schema(self) -> pl.Schema:
        return pl.Schema({column.name: column.polars_type for column in self.columns})

    def ddl(self) -> str:
        # DuckLake has no primary keys or NOT NULL constraints on all catalogs; uniqueness is
        # enforced by content-hash ids plus anti-join writes, and nullability by the gates.
        body = ",\n  ".join(f"{column.name} {column.type}" for column in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {body}\n)"

    def empty_frame(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.polars_schema())

    def frame(self, rows: list[dict]) -> pl.DataFrame:
        """Rows (dicts keyed by column name) as a frame with exactly this table's schema."""
        if not rows:
            return self.empty_frame()
        return pl.DataFrame(rows, schema=self.polars_schema(), orient="row")


def _c(name: str, type_: str, doc: str = "", nullable: bool = True, volatile: bool = False) -> Column:
    return Column(name=name, type=type_, nullable=nullable, doc=doc, volatile=volatile)


RUNS = Table(
    "runs",
    (
        _c("run_id", "VARCHAR", "hash of the run's config: the same inputs give the same run", False),
        _c("flow", "VARCHAR", "the flow that ran (generate, ...)", False),
        _c("config_json", "VARCHAR", "the full validated config"),
        _c("policy", "VARCHAR", "policy spec used for sampling"),
        _c("started_at", "TIMESTAMP", volatile=True),
        _c("finished_at", "TIMESTAMP", volatile=True),
        _c("status", "VARCHAR", "completed or failed"),
        _c("n_problems", "BIGINT"),
        _c("n_nodes", "BIGINT"),
        _c("n_labels", "BIGINT"),
        _c("policy_seconds", "DOUBLE", "wall time spent inside the policy model", volatile=True),
        _c("wall_seconds", "DOUBLE", "wall time of the whole run", volatile=True),
        _c("generated_tokens", "BIGINT"),
        _c("prompt_format", "VARCHAR",
           "the prompt format as JSON: id, kind, step boundary and separator, answer reader, system prompt, "
           "few-shot examples and template (with digests), where the chat template came from"),
    ),
    key="run_id",
)

PROBLEMS = Table(
    "problems",
    (
        _c("problem_id", "VARCHAR", "hash of question and reference answer", False),
        _c("source", "VARCHAR", "synthetic, gsm8k, math or prmforge"),
        _c("source_file", "VARCHAR", volatile=True),
        _c("source_row", "BIGINT"),
        _c("question", "VARCHAR", nullable=False),
        _c("answer", "VARCHAR", "reference final answer", False),
        _c("reference_steps", "VARCHAR[]", "ground-truth steps, when known"),
        _c("run_id", "VARCHAR"),
    ),
    key="problem_id",
)

NODES = Table(
    "nodes",
    (
        _c("node_id", "VARCHAR", "hash of parent id (or problem id at the root) and step text", False),
        _c("problem_id", "VARCHAR", nullable=False),
        _c("parent_id", "VARCHAR", "null for a solution's first step"),
        _c("depth", "INTEGER", "1 for a solution's first step"),
        _c("step_text", "VARCHAR", nullable=False),
        _c("is_terminal", "BOOLEAN", "the solution ends at this step"),
        _c("final_answer", "VARCHAR", "extracted answer, terminal nodes only"),
        _c("is_correct", "BOOLEAN", "math-verify against the reference, terminal nodes only"),
        _c("policy", "VARCHAR"),
        _c("temperature", "DOUBLE"),
        _c("seed", "BIGINT"),
        _c("generated_tokens", "BIGINT", "tokens of the sample this step came from, on its first step"),
        _c("run_id", "VARCHAR"),
        _c("prompt_format", "VARCHAR", "id of the prompt format the step was sampled in: plain, chat:<digest>, "
           "template:<file>:<digest> (runs.prompt_format describes it)"),
    ),
    key="node_id",
)

ROLLOUTS = Table(
    "rollouts",
    (
        _c("rollout_id", "VARCHAR", "hash of node, labeler, seed and index", False),
        _c("node_id", "VARCHAR", "the prefix ends at this node", False),
        _c("labeler", "VARCHAR"),
        _c("sample_index", "INTEGER"),
        _c("completion", "VARCHAR"),
        _c("final_answer", "VARCHAR"),
        _c("is_correct", "BOOLEAN"),
        _c("generated_tokens", "BIGINT"),
        _c("finish_reason", "VARCHAR"),
        _c("policy", "VARCHAR"),
        _c("temperature", "DOUBLE"),
        _c("seed", "BIGINT"),
        _c("run_id", "VARCHAR"),
        _c("prompt", "VARCHAR",
           "the raw prompt when it is not the prefix through node_id: a judge's (labeler 'judge'; "
           "node_id is the solution's last step, completion the raw answer, final_answer what was "
           "read: the step number, 'none', or null when unreadable); null for rollouts"),
        _c("prompt_format", "VARCHAR", "id of the prompt format the prefix was written in (as nodes.prompt_format)"),
    ),
    key="rollout_id",
)

STEP_LABELS = Table(
    "step_labels",
    (
        _c("label_id", "VARCHAR", "hash of node, labeler and its parameters", False),
        _c("node_id", "VARCHAR", nullable=False),
        _c("labeler", "VARCHAR", "mc, ...", False),
        _c("q", "DOUBLE", "soft label: share of rollouts that reach the reference answer"),
        _c("hard", "BOOLEAN", "hard label: q > 0"),
        _c("n", "BIGINT", "rollouts spent on this node"),
        _c("n_correct", "BIGINT"),
        _c("generated_tokens", "BIGINT", "tokens generated for this label"),
        _c("reason", "VARCHAR", "how the label was reached"),
        _c("run_id", "VARCHAR"),
        _c("progress", "DOUBLE", "progress labeler only: q_t - q_(t-1), the change in q the step made"),
    ),
    key="label_id",
)

QUARANTINE = Table(
    "quarantine",
    (
        _c("quarantine_id", "VARCHAR", "hash of file, row and reason", False),
        _c("source_file", "VARCHAR", volatile=True),
        _c("source_row", "BIGINT", "1-based line or row number"),
        _c("raw", "VARCHAR", "the rejected row, truncated"),
        _c("reason", "VARCHAR", "why it was rejected", False),
        _c("run_id", "VARCHAR"),
    ),
    key="quarantine_id",
)

DQ_RESULTS = Table(
    "dq_results",
    (
        _c("result_id", "VARCHAR", nullable=False),
        _c("run_id", "VARCHAR"),
        _c("suite", "VARCHAR", "expectation suite (one per table or dataset)"),
        _c("expectation", "VARCHAR", "expectation type and column"),
        _c("success", "BOOLEAN"),
        _c("unexpected_count", "BIGINT"),
        _c("details", "VARCHAR"),
        _c("checked_at", "TIMESTAMP", volatile=True),
    ),
    key="result_id",
)

DATASETS = Table(
    "datasets",
    (
        _c("dataset_id", "VARCHAR", "hash of the snapshot, labeler and split settings", False),
        _c("version", "BIGINT", "1, 2, 3, ... in build order"),
        _c("snapshot_id", "BIGINT", "warehouse snapshot the dataset was read from"),
        _c("labeler", "VARCHAR"),
        _c("path", "VARCHAR", "folder with the exported Parquet files", volatile=True),
        _c("n_train", "BIGINT"),
        _c("n_test", "BIGINT"),
        _c("n_steps", "BIGINT"),
        _c("test_fraction", "DOUBLE"),
        _c("created_at", "TIMESTAMP", volatile=True),
        _c("run_id", "VARCHAR"),
    ),
    key="dataset_id",
)

VERDICTS = Table(
    "verdicts",
    (
        _c("verdict_id", "VARCHAR", "hash of node and verifier", False),
        _c("node_id", "VARCHAR", nullable=False),
        _c("verifier", "VARCHAR", "arith, z3, lean, code", False),
        _c("verdict", "VARCHAR", "valid, invalid or unknown", False),
        _c("evidence", "VARCHAR", "counterexample, failing expression or the tool's message"),
        _c("reason", "VARCHAR", "why the verdict is unknown, when it is"),
        _c("ms", "DOUBLE", "time the verifier spent", volatile=True),
        _c("run_id", "VARCHAR"),
    ),
    key="verdict_id",
)

PREFERENCE_PAIRS = Table(
    "preference_pairs",
    (
        _c("pair_id", "VARCHAR", "hash of labeler, chosen node and rejected node", False),
        _c("problem_id", "VARCHAR", nullable=False),
        _c("parent_id", "VARCHAR", "the shared prefix ends here; null when both are first steps"),
        _c("prompt", "VARCHAR", "question and the shared prefix steps, in the policy's text format"),
        _c("chosen", "VARCHAR", "the sibling step with the higher q"),
        _c("rejected", "VARCHAR", "the sibling step with the lower q"),
        _c("chosen_node_id", "VARCHAR"),
        _c("rejected_node_id", "VARCHAR"),
        _c("chosen_q", "DOUBLE"),
        _c("rejected_q", "DOUBLE"),
        _c("labeler", "VARCHAR", "the labeler whose q ordered the pair"),
        _c("run_id", "VARCHAR"),
    ),
    key="pair_id",
)

CONSENSUS = Table(
    "consensus",
    (
        _c("decision_id", "VARCHAR", "hash of solution, rule and the sources considered", False),
        _c("solution_id", "VARCHAR", "the solution's terminal node id", False),
        _c("problem_id", "VARCHAR"),
        _c("rule", "VARCHAR", "consensus rule: default, majority or mc_and_verifiers", False),
        _c("kept", "BOOLEAN", "the solution passed the rule", False),
        _c("first_error", "INTEGER", "agreed 0-based first wrong step, -1 for none; null when dropped"),
        _c("agreeing", "VARCHAR[]", "label sources (labellers, verifiers) consistent with the decision"),
        _c("disagreeing", "VARCHAR[]", "label sources that disagreed; empty when dropped for lack of votes"),
        _c("unavailable", "VARCHAR[]", "sources with no view of this solution (missing labels, all unknown)"),
        _c("reason", "VARCHAR", "why kept or dropped, with each source's first wrong step", False),
        _c("run_id", "VARCHAR"),
        _c("source_views", "VARCHAR[]",
           "every source's view as 'source=index': its 0-based first wrong step, -1 for none, "
           "'unavailable' when it has none (the consensus_retention view reads it)"),
    ),
    key="decision_id",
)

# Trained reward models, their evaluations, and the loop's decisions (prmforge train / evaluate /
# nightly).
MODELS = Table(
    "models",
    (
        _c("model_id", "VARCHAR", "hash of the training config, base and dataset", False),
        _c("version", "BIGINT", "1, 2, 3, ... in registration order"),
        _c("path", "VARCHAR", "HF-format directory (save_pretrained + tokenizer + README.md)",
           volatile=True),
        _c("base", "VARCHAR", "the model training started from"),
        _c("dataset_version", "BIGINT"),
        _c("dataset_snapshot", "BIGINT", "warehouse snapshot the dataset was read from"),
        _c("label_kind", "VARCHAR", "hard (cross-entropy) or soft (BCE on q)"),
        _c("kind", "VARCHAR", "prm (a label at every step) or orm (is_correct at the last step)"),
        _c("metrics_json", "VARCHAR", "training metrics: loss, held-out step accuracy, examples skipped"),
        _c("promoted", "BOOLEAN", "the model nightly compares candidates against; at most one"),
        _c("created_at", "TIMESTAMP", volatile=True),
        _c("run_id", "VARCHAR"),
    ),
    key="model_id",
)

EVALUATIONS = Table(
    "evaluations",
    (
        _c("evaluation_id", "VARCHAR", "hash of model, evaluation set, kind and metric", False),
        _c("model_id", "VARCHAR", nullable=False),
        _c("kind", "VARCHAR", "first_error, best_of_n, min_on_last or step"),
        _c("metric", "VARCHAR", "e.g. f1, accuracy_erroneous, prm_min@4, majority@8, threshold"),
        _c("value", "DOUBLE"),
        _c("n", "BIGINT", "solutions or problems the value is measured on"),
        _c("details_json", "VARCHAR", "evaluation set, threshold and other settings"),
        _c("created_at", "TIMESTAMP", volatile=True),
        _c("run_id", "VARCHAR"),
    ),
    key="evaluation_id",
)

DECISIONS = Table(
    "decisions",
    (
        _c("decision_id", "VARCHAR", "hash of run, stage and decision", False),
        _c("run_id", "VARCHAR", "the nightly run that decided"),
        _c("stage", "VARCHAR", "seeds, generate, train, evaluate or promote"),
        _c("decision", "VARCHAR", "what was decided: continue, stop, promote, keep, ..."),
        _c("reason", "VARCHAR", "why, with the numbers it was decided on"),
        _c("created_at", "TIMESTAMP", volatile=True),
        _c("metric", "VARCHAR", "promote: what was compared, e.g. prm_min Best-of-16 accuracy"),
        _c("compared_with", "VARCHAR", "promote: the baseline that decided (promoted vN, orm or random)"),
        _c("difference", "DOUBLE", "promote: candidate minus that baseline, mean over the held-out problems"),
        _c("difference_low", "DOUBLE", "promote: lower end of its 95% paired bootstrap interval"),
        _c("difference_high", "DOUBLE", "promote: upper end of that interval"),
        _c("problems", "BIGINT", "promote: held-out problems the difference is measured on"),
    ),
    key="decision_id",
)

# What each stage of a run spent inside the policy: the cost behind its labels.
POLICY_USAGE = Table(
    "policy_usage",
    (
        _c("usage_id", "VARCHAR", "hash of run and stage", False),
        _c("run_id", "VARCHAR"),
        _c("stage", "VARCHAR", "solutions (sampling) or labels"),
        _c("labeler", "VARCHAR", "the labeller the rollouts were for; null for solutions"),
        _c("policy", "VARCHAR"),
        _c("prompts", "BIGINT", "prompts sent to the policy (each asks for n samples)"),
        _c("generated_tokens", "BIGINT"),
        _c("seconds", "DOUBLE", "wall time inside the policy (near 0 when served from the generation cache)",
           volatile=True),
        _c("calls", "BIGINT", "generate calls"),
        _c("engine_restarts", "BIGINT",
           "times the policy's engine died and was restarted in this stage (its unanswered prompts resubmitted)"),
    ),
    key="usage_id",
)

# In migration order: a table added later goes at the end, so an existing warehouse gains it.
ALL_TABLES: tuple[Table, ...] = (
    RUNS,
    PROBLEMS,
    NODES,
    ROLLOUTS,
    STEP_LABELS,
    QUARANTINE,
    DQ_RESULTS,
    DATASETS,
    VERDICTS,
    CONSENSUS,
    PREFERENCE_PAIRS,
    MODELS,
    EVALUATIONS,
    DECISIONS,
    POLICY_USAGE,
)

TABLES_BY_NAME: dict[str, Table] = {table.name: table for table in ALL_TABLES}
