"""Fixtures shared by the CLI tests in tests/flows."""

import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    """A CLI runner with every command group registered (they are added lazily in the console script)."""
    from flows.cli import _register_area_commands

    _register_area_commands()
    return CliRunner()
