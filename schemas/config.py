"""Typed, validated configuration. Every field carries its help text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_DATA_DIR = Path("data")


class WarehouseConfig(BaseModel):
    """Where the DuckLake warehouse lives."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("PRMFORGE_DATA_DIR", DEFAULT_DATA_DIR)),
        description="Project data directory: catalog, Parquet data, datasets (env PRMFORGE_DATA_DIR).",
    )
    catalog: str = Field(
        default_factory=lambda: os.environ.get("PRMFORGE_CATALOG", "sqlite"),
        description=(
            "DuckLake catalog: 'sqlite' (default; readers never block on a writer), 'duckdb', or "
            "'postgres:<libpq connection string>' for many machines (env PRMFORGE_CATALOG)."
        ),
    )
    data_path: str | None = Field(
        default_factory=lambda: os.environ.get("PRMFORGE_DATA_PATH"),
        description="Where DuckLake writes Parquet files; default DATA_DIR/lake/ (env PRMFORGE_DATA_PATH).",
    )

    @field_validator("catalog")
    @classmethod
    def _known_catalog(cls, value: str) -> str:
        if value in ("sqlite", "duckdb") or value.startswith("postgres:"):
            return value
        raise ValueError("catalog must be 'sqlite', 'duckdb' or 'postgres:<connection string>'")

    @property
    def lake_path(self) -> str:
        return self.data_path or str(self.data_dir / "lake") + "/"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"


# Fields added after warehouses already held runs: at their default they are left out of the JSON
# that run and dataset ids hash, so upgrading prmforge keeps every stored id (and its cache).
LATER_FIELDS = ("slips", "references")


def identity_json(config: BaseModel) -> str:
    """The config's JSON for hashing into ids: LATER_FIELDS are left out while at their default.

    >>> identity_json(DatasetConfig()) == DatasetConfig().model_dump_json(exclude={"slips", "references"})
    True
    >>> '"slips":2' in identity_json(DatasetConfig(slips=2))
    True
    """
    fields = type(config).model_fields
    at_default = {name for name in LATER_FIELDS if name in fields and getattr(config, name) == fields[name].default}
    return config.model_dump_json(exclude=at_default)


class DatasetConfig(BaseModel):
    """How a dataset version is built from the warehouse."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    labeler: str = Field(
        "mc",
        description="Whose labels: mc, search, adaptive, progress, judge, consensus:<rule> or verifier:<name> (one verifier alone).",
    )
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of problems in the test split.")
    hnc: bool = Field(True, description="Add merged-step (HNC) variants to the dataset, marked variant='hnc'.")
    slips: int = Field(
        0, ge=0, le=8,
        description="Slipped copies per training solution, marked variant='slip': cut after a good step whose result "
        "is moved, kept when the arith verifier calls it invalid (tasks/augment.py).",
    )
    references: bool = Field(
        False,
        description="Add each training problem's worked solution (its seed's reference steps), every step good, "
        "marked variant='reference'; slips apply to them too (tasks/augment.py).",
    )
    balance: bool = Field(
        True, description="With the search labeller, balance solutions with and without an error (OmegaPRM)."
    )
    pair_margin: float = Field(
        0.25, ge=0.0, le=1.0, description="Smallest q difference between sibling steps for a preference pair."
    )
    pair_labeler: str = Field("mc", description="Whose q orders the preference pairs.")
    seed: int = Field(0, description="Seed for HNC merge positions and balancing.")


class GenerateConfig(BaseModel):
    """Everything that determines what `prmforge generate` produces. Its hash is the run id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    problems: int = Field(8, ge=1, description="Number of seed problems to use.")
    samples: int = Field(4, ge=1, description="Solutions sampled per problem (N).")
    rollouts: int = Field(4, ge=1, description="Monte Carlo completions per step (k).")
    seed: int = Field(0, description="Seed for problem generation and sampling.")
    seeds_file: Path | None = Field(
        None, description="JSONL or Parquet seed file (GSM8K, MATH or prmforge form); synthetic if unset."
    )
    min_steps: int = Field(2, ge=1, le=12, description="Fewest steps in a synthetic problem.")
    max_steps: int = Field(6, ge=1, le=12, description="Most steps in a synthetic problem.")
    policy: str = Field(
        "embedded",
        description=(
            "Policy spec: 'embedded', 'transformers:PATH', 'vllm:PATH_OR_NAME', 'openai:URL/MODEL' or "
            "'simulated[:...]'."
        ),
    )
    labeler: Literal["mc", "search", "adaptive", "progress", "judge"] = Field(
        "mc",
        description=(
            "Step labeller: 'mc' (k rollouts from every step), 'search' (OmegaPRM binary search for "
            "the first wrong step, k rollouts per probe), 'adaptive' (the verifiers first: a step they "
            "call invalid bounds the search, and rollouts go only to the steps before it, within "
            "adaptive_budget), 'progress' (q_t - q_(t-1) beside mc's q) or 'judge' "
            "(the policy names each solution's first wrong step; it must follow instructions)."
        ),
    )
    adaptive_budget: int = Field(
        32,
        ge=0,
        description=(
            "The adaptive labeller's rollouts per solution (k per probe; probes another solution paid "
            "for are free). A search that cannot afford its next probe stops at the nearest step known "
            "to be wrong. 0: verdicts and free evidence only."
        ),
    )
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(160, ge=1, description="Longest continuation, in tokens.")
    prompt_format: str = Field(
        "plain",
        description=(
            "How a problem becomes the policy's prompt: 'plain' (`Question: ...\\nAnswer:\\n`, one step per "
            "line: the embedded model's format), 'chat' (the policy tokenizer's chat template, with system_prompt "
            "and few-shot examples) or the path of a Jinja template file (fields: question, problem_id, source, "
            "system, step_separator, examples)."
        ),
    )
    system_prompt: str | None = Field(
        None,
        description=(
            "The system message of 'chat' prompts (`system` in a template). Unset: 'Please reason step by step, "
            "and put your final answer within \\boxed{}.' for chat; '' for none."
        ),
    )
    few_shot_file: Path | None = Field(
        None,
        description=(
            "Seed file (JSONL or Parquet, rows with steps) of worked examples shown before every problem: "
            "user/assistant turns in 'chat', `examples` in a template, earlier Question/Answer blocks in 'plain'."
        ),
    )
    chat_template_from: Path | None = Field(
        None,
        description=(
            "A local tokenizer directory whose chat template renders 'chat' prompts. Unset: the policy's own "
            "(transformers and vllm render with their tokenizer; an openai: server through its chat-completions "
            "endpoint). Set, an openai: policy sends the locally rendered prompt to its completions endpoint."
        ),
    )
    step_boundary: str | None = Field(
        None,
        description=(
            "Regex that separates steps in a solution. Unset: the format's (plain: a blank line or a new "
            "`Step k:` line; chat and templates: a blank line, i.e. '\\n\\n' between steps)."
        ),
    )
    step_separator: str | None = Field(
        None,
        description=(
            "What goes between steps when a prefix is rebuilt for a rollout; the boundary must split on it. "
            "Unset: '\\n' for plain, '\\n\\n' for chat and templates."
        ),
    )
    answer_format: Literal["any", "boxed"] | None = Field(
        None,
        description=(
            "How a final answer is read: 'any' (\\boxed{}, '#### n' or 'The answer is n') or 'boxed' (\\boxed{} "
            "through math-verify). Unset: any for plain, boxed for chat and templates."
        ),
    )
    verifiers: tuple[Literal["arith", "z3", "lean", "code"], ...] = Field(
        (),
        description=(
            "Step verifiers to run on every step (arith, z3, lean, code); verdicts go to `verdicts`. "
            "The adaptive labeller runs arith and z3 when none is given."
        ),
    )
    consensus: Literal["default", "majority", "mc_and_verifiers"] | None = Field(
        None, description="Consensus rule over the labellers and the verifiers; the dataset then uses its labels."
    )
    consensus_sources: tuple[Literal["mc", "search", "adaptive", "progress", "judge"], ...] = Field(
        (),
        description=(
            "Labellers whose labels vote in consensus beside the verifiers: this run's labels and those "
            "stored by earlier runs for the same steps (e.g. mc earlier, judge now). Empty (the default): "
            "every labeller that has labels for the steps."
        ),
    )
    verify_budget_ms: float = Field(60_000, gt=0, description="Verification time budget per solution, in ms.")
    policy_timeout_s: float = Field(
        1800, gt=0, description="Longest one policy call may take before the run stops with an error."
    )
    shard: str | None = Field(
        None, pattern=r"^\d+/\d+$",
        description="'i/n': only the problems of shard i of n (by problem id), for workers on several machines.",
    )
    publish_dataset: bool = Field(
        True, description="Build a dataset version pinned to the run's snapshot (off for shard workers; build it after)."
    )
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="Share of problems in the test split.")
    hnc: bool = Field(True, description="Add merged-step (HNC) variants to the dataset, marked variant='hnc'.")
    slips: int = Field(
        0, ge=0, le=8,
        description="Slipped copies per training solution, marked variant='slip': cut after a good step whose result "
        "is moved, kept when the arith verifier calls it invalid (tasks/augment.py).",
    )
    references: bool = Field(
        False,
        description="Add each training problem's worked solution (its seed's reference steps), every step good, "
        "marked variant='reference'; slips apply to them too (tasks/augment.py).",
    )
    balance: bool = Field(
        True, description="With the search labeller, balance solutions with and without an error (OmegaPRM)."
    )
    pair_margin: float = Field(
        0.25, ge=0.0, le=1.0, description="Smallest q difference between sibling steps for a preference pair."
    )

    @field_validator("step_boundary")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        import re

        if value is None:
            return value
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"step_boundary is not a valid regex: {error}") from None
        return value

    @field_validator("shard")
    @classmethod
    def _shard_in_range(cls, value: str | None) -> str | None:
        if value is not None:
            index, count = map(int, value.split("/"))
            if not 0 <= index < count:
                raise ValueError(f"shard {value}: need 0 <= i < n")
        return value

    def verifiers_to_run(self) -> tuple[str, ...]:
        """The verifiers the run's verdicts come from: those configured, else the adaptive labeller's.

        >>> GenerateConfig(labeler="adaptive").verifiers_to_run(), GenerateConfig().verifiers_to_run()
        (('arith', 'z3'), ())
        """
        if self.verifiers or self.labeler != "adaptive":
            return self.verifiers
        from tasks.labelers.adaptive import DEFAULT_VERIFIERS

        return DEFAULT_VERIFIERS

    def dataset_config(self) -> DatasetConfig:
        labeler = f"consensus:{self.consensus}" if self.consensus else self.labeler
        return DatasetConfig(
            labeler=labeler, test_fraction=self.test_fraction, hnc=self.hnc, slips=self.slips,
            references=self.references, balance=self.balance, pair_margin=self.pair_margin, pair_labeler=self.labeler,
            seed=self.seed,
        )
