"""Process-wide settings that must be in place before Prefect is imported."""

from __future__ import annotations

import os
from pathlib import Path


def configure_prefect(home: Path | None = None) -> None:
    """Keep Prefect's state project-local: a database migrated by one Prefect version breaks another."""
    prefect_home = Path(os.environ.setdefault("PREFECT_HOME", str((home or Path.cwd() / ".prefect").resolve())))
    os.environ.setdefault("PREFECT_MEMO_STORE_PATH", str(prefect_home / "memo_store.toml"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
