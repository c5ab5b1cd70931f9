"""Resource faults: a full disk and a hanging policy end the run with one clear line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flows.generate as generate_module
from flows.generate import generate_flow
from schemas.config import GenerateConfig
from tasks.policies.timeout import PolicyTimeout

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
ROOT = Path(__file__).resolve().parents[2]


class HangingPolicy:
    name = "hanging"

    def generate(self, prompts, n, params):
        time.sleep(3600)


def test_a_hanging_policy_is_bounded_by_its_timeout(prefect_harness, warehouse_config, monkeypatch):
    monkeypatch.setattr(generate_module, "load_policy", lambda spec: HangingPolicy())
    config = GenerateConfig(problems=1, samples=1, rollouts=1, policy="simulated", policy_timeout_s=1.0)
    began = time.monotonic()
    with pytest.raises(PolicyTimeout, match="gave no answer within 1 s") as caught:
        generate_flow(config, warehouse_config)
    assert time.monotonic() - began < 60
    assert "\n" not in str(caught.value)


@pytest.fixture()
def full_disk(tmp_path):
    """A 512 KiB tmpfs as the data directory (needs root, as CI has)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_full_data_directory_is_one_clear_line(prefect_server_env, full_disk):
    result = subprocess.run(
        [PRMFORGE, "generate", "--problems", "60", "--samples", "4", "--rollouts", "4",
         "--policy", "simulated", "--data-dir", str(full_disk)],
        env=prefect_server_env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert shutil.disk_usage(full_disk).free < 64 * 1024 or "space" in errors[0].lower() or "full" in errors[0].lower()


def test_a_read_only_data_directory_is_one_clear_line(prefect_server_env, tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(read_only)], check=False)
    try:
        if os.access(read_only, os.W_OK) and not _is_read_only_mount(read_only):
            pytest.skip("cannot make a read-only mount here")
        result = subprocess.run(
            [PRMFORGE, "generate", "--problems", "1", "--policy", "simulated", "--data-dir", str(read_only)],
            env=prefect_server_env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
    finally:
        subprocess.run(["umount", str(read_only)], check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot write to the data directory")


def _is_read_only_mount(path: Path) -> bool:
    return any(line.split()[1] == str(path) and "ro" in line.split()[3].split(",")
               for line in Path("/proc/mounts").read_text().splitlines() if len(line.split()) > 3)
