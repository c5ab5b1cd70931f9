"""Shared, expensive fixtures: one Prefect test harness per session, and a small trained policy."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from flows.environment import configure_prefect

# Before anything imports Prefect: its state goes to a throwaway home for the test session.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="prmforge-prefect-"))
configure_prefect(_PREFECT_HOME)


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (starting one costs ~15-20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def warehouse_config(tmp_path):
    from schemas.config import WarehouseConfig

    return WarehouseConfig(data_dir=tmp_path / "warehouse", catalog=os.environ.get("PRMFORGE_TEST_CATALOG", "sqlite"))
