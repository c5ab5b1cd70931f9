"""Quality gates: run expectation suites with Great Expectations on frames before any commit."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from schemas.errors import UserError
from schemas.expectations import Expectation


@dataclass(frozen=True)
class GateResult:
    suite: str
    expectation: str
    success: bool
    unexpected_count: int
    details: str


class GateFailed(UserError, RuntimeError):
    """At least one expectation failed; nothing may be committed."""

    def __init__(self, failures: Sequence[GateResult]):
        names = ", ".join(f"{f.suite}.{f.expectation} ({f.unexpected_count} rows)" for f in failures)
        super().__init__(f"quality gate failed: {names}")
        self.failures = list(failures)


_context = None
_INDEX = "prmforge_index"  # an expectation's place in its suite, carried through Great Expectations


def _gx_context():
    """One ephemeral Great Expectations context per process (creating one is not free)."""
    global _context
    if _context is None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import logging

        import great_expectations as gx

        # Importing great_expectations sets its own log levels; quiet it afterwards.
        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = {"globally": False}
    return _context


def run_suite(suite: str, frame: pl.DataFrame, expectations: Sequence[Expectation]) -> list[GateResult]:
    """Validate `frame` against the suite; one GateResult per expectation. An empty frame passes."""
    if frame.is_empty():
        return [GateResult(suite, e.name, True, 0, "no rows") for e in expectations]
    import great_expectations as gx

    context = _gx_context()
    source_name = f"prmforge_{suite}"
    try:
        source = context.data_sources.get(source_name)
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas(source_name)
    asset_name = f"{suite}_frame"
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch_definition = asset.get_batch_definition("all")
    except (KeyError, LookupError, ValueError):
        batch_definition = asset.add_batch_definition_whole_dataframe("all")
    checked = frame.select(expectation_columns(expectations))
    set_checks = [_set_check(index, expectation, checked) for index, expectation in enumerate(expectations)]
    checked = checked.with_columns(check.column for check in set_checks if check is not None)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": checked.to_pandas()})
    # One validation for the whole suite: Great Expectations then builds one metric graph, and a
    # metric two expectations share is computed once (a call per expectation cost ~1.7x as much).
    # It orders the results its own way, so each expectation carries its index in `meta`.
    suite_expectations = [
        getattr(gx.expectations, expectation.kind)(**(expectation.kwargs if check is None else check.kwargs),
                                                   meta={_INDEX: index})
        for index, (expectation, check) in enumerate(zip(expectations, set_checks, strict=True))
    ]
    validated = batch.validate(gx.ExpectationSuite(name=source_name, expectations=suite_expectations))
    outcomes = {outcome.expectation_config.meta[_INDEX]: outcome for outcome in validated.results}
    results = []
    for index, expectation in enumerate(expectations):
        outcome = outcomes[index]
        observed = outcome.result or {}
        sample = observed.get("partial_unexpected_list") or []
        results.append(
            GateResult(
                suite=suite,
                expectation=expectation.name,
                success=bool(outcome.success),
                unexpected_count=int(observed.get("unexpected_count") or 0),
                details=json.dumps({"kind": expectation.kind, "sample": [str(s) for s in sample[:5]]}),
            )
        )
    return results


def expectation_columns(expectations: Sequence[Expectation]) -> list[str]:
    """The columns a suite reads, in order of first use: Great Expectations gets only those.

    >>> expectation_columns([Expectation("a", "ExpectColumnPairValuesToBeEqual", {"column_A": "x", "column_B": "y"}),
    ...                      Expectation("b", "ExpectColumnValuesToBeUnique", {"column": "x"})])
    ['x', 'y']
    """
    names = [expectation.kwargs[key] for expectation in expectations
             for key in ("column", "column_A", "column_B") if key in expectation.kwargs]
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class _SetCheck:
    column: pl.Series  # the checked column with every value already in the set replaced by null
    kwargs: dict  # the expectation's arguments, reading that column against a one-value set


# Great Expectations copies an expectation's arguments about a hundred times per validation
# (pydantic v1 `.dict()`), so a value set of 150,000 node ids costs seconds. For a text column the
# membership is decided here, on every row, by exact string equality (what pandas' `isin` does),
# and Great Expectations checks what is left: values in the set become null (which the
# expectation skips, as it skips the column's own nulls), so exactly the rows outside the set
# remain, in their order, and fail against any subset of the set. Success, unexpected count and
# the sample of unexpected values are the same as with the whole set.
def _set_check(index: int, expectation: Expectation, frame: pl.DataFrame) -> _SetCheck | None:
    if expectation.kind != "ExpectColumnValuesToBeInSet" or frame.schema[expectation.kwargs["column"]] != pl.String:
        return None
    value_set = list(expectation.kwargs["value_set"])
    values = frame[expectation.kwargs["column"]]
    in_set = values.is_in(pl.Series(value_set, dtype=pl.String).implode())
    outside = pl.select(pl.when(in_set).then(None).otherwise(values)).to_series()
    name = f"__in_set_{index}"  # a column of its own: two expectations may read one column
    return _SetCheck(outside.alias(name), {**expectation.kwargs, "column": name, "value_set": value_set[:1]})


def enforce(results: Sequence[GateResult]) -> None:
    failures = [result for result in results if not result.success]
    if failures:
        raise GateFailed(failures)
