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
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame.to_pandas()})
    results = []
    for expectation in expectations:
        gx_expectation = getattr(gx.expectations, expectation.kind)(**expectation.kwargs)
        outcome = batch.validate(gx_expectation)
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


def enforce(results: Sequence[GateResult]) -> None:
    failures = [result for result in results if not result.success]
    if failures:
        raise GateFailed(failures)
