"""Resource faults: a full or read-only disk, an unreachable catalog and a hanging policy end the run
with one clear line; a hanging verifier is cut off and the run goes on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import flows.generate as generate_module
from flows.generate import generate_flow
from schemas.config import GenerateConfig, WarehouseConfig
from tasks.policies.timeout import PolicyTimeout
from tasks.verifiers.arith import ArithVerifier
from tasks.verifiers.base import run_guarded
from warehouse.connection import connect

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


class HangingVerifier:
    """Built on run_guarded like the real verifiers, but sleeps far past its timeout."""

    name = "hanging"

    def verify(self, step_text, context):
        return run_guarded(self.name, 200, lambda deadline: time.sleep(120))


def test_a_hanging_verifier_is_cut_off_and_the_run_goes_on(prefect_harness, warehouse_config, monkeypatch):
    monkeypatch.setattr(generate_module, "load_verifiers", lambda names: [HangingVerifier(), ArithVerifier()])
    config = GenerateConfig(problems=3, samples=2, rollouts=1, policy="simulated", verifiers=("arith",))
    began = time.monotonic()
    summary = generate_flow(config, warehouse_config)
    assert time.monotonic() - began < 60
    assert summary.status == "completed" and summary.new_verdicts == 2 * summary.new_nodes > 0
    connection = connect(warehouse_config, read_only=True)
    try:
        reasons = connection.execute(
            "SELECT verdict, reason, count(*) FROM verdicts WHERE verifier = 'hanging' GROUP BY ALL ORDER BY 3"
        ).fetchall()
        arith = connection.execute("SELECT count(*) FROM verdicts WHERE verifier = 'arith' AND verdict = 'valid'")
        assert arith.fetchone()[0] > 0
    finally:
        connection.close()
    # One step pays the timeout; the rest are answered at once while that check still runs.
    assert reasons == [
        ("unknown", "timeout after 200 ms: the check did not stop and was cut off", 1),
        ("unknown", "not checked: an earlier check of this verifier hung and is still running", summary.new_nodes - 1),
    ]


def as_root(command: list[str]) -> tuple[list[str] | None, str]:
    """`command` as root: itself when this is root, else through passwordless sudo (as .ci/run
    uses for non-root runs); (None, why) when neither is available."""
    if os.geteuid() == 0:
        return command, "root"
    if shutil.which("sudo") is None:
        return None, f"mounting a tmpfs needs root or passwordless sudo; uid {os.geteuid()} has no sudo"
    probe = subprocess.run(["sudo", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, (f"mounting a tmpfs needs root or passwordless sudo; `sudo -n true` as uid {os.geteuid()} "
                      f"failed: {probe.stderr.strip()}")
    return ["sudo", "-n", *command], "sudo"


@pytest.fixture()
def full_disk(tmp_path):
    """A 512 KiB tmpfs as the data directory, owned by this user (mounting needs root: as root
    directly, as CI runs, else through passwordless sudo)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    options = f"size=512k,mode=0755,uid={os.getuid()},gid={os.getgid()}"
    mount, why = as_root(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)])
    if mount is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(why)
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"cannot mount a tmpfs (as {why}): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(as_root(["umount", str(mount_point)])[0], check=False)


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
    # The line names the folder and says the disk is full, in the words of the layer that hit it
    # first (the SQLite catalog, or the OS writing a data file).
    assert re.fullmatch(
        rf"error: storage error under {re.escape(str(full_disk))}: "
        r"(database or disk is full|.*No space left on device.*)",
        errors[0],
    ), errors[0]
    assert shutil.disk_usage(full_disk).free < 64 * 1024


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder nobody can write to, root included: permissions do not stop root, so as root it
    is a read-only tmpfs mount, or else an immutable folder (chattr +i, for when mounting is not
    allowed); as another user a folder without write permission is enough."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    undo: list[list[str]] = []
    if os.geteuid() != 0:
        folder.chmod(0o555)
    elif subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(folder)],
                        capture_output=True).returncode == 0:
        undo.append(["umount", str(folder)])
    elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        undo.append(["chattr", "-i", str(folder)])
    try:
        if _writable(folder):
            (pytest.fail if os.environ.get("CI") else pytest.skip)(
                "cannot make a read-only folder here (no tmpfs mount, no chattr +i)")
        yield folder
    finally:
        for command in undo:
            subprocess.run(command, check=False)
        folder.chmod(0o755)


def test_a_read_only_data_directory_is_one_clear_line(prefect_server_env, read_only_dir):
    result = subprocess.run(
        [PRMFORGE, "generate", "--problems", "1", "--policy", "simulated", "--data-dir", str(read_only_dir)],
        env=prefect_server_env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr[-2000:]
    assert errors[0].startswith(f"error: cannot write to the data directory {read_only_dir}: ")


UNREACHABLE_CATALOG = "postgres:host=127.0.0.1 port=1 dbname=prmforge user=postgres connect_timeout=5"


@pytest.mark.parametrize("command", [
    ["generate", "--problems", "1", "--policy", "simulated"],
    ["sql", "select count(*) from nodes"],
    ["dataset", "build"],
])
def test_an_unreachable_postgres_catalog_is_one_clear_line(prefect_server_env, tmp_path, command):
    env = {**prefect_server_env, "PRMFORGE_CATALOG": UNREACHABLE_CATALOG, "PRMFORGE_DATA_PATH": f"{tmp_path}/lake/"}
    result = subprocess.run([PRMFORGE, *command, "--data-dir", str(tmp_path / "local")],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr[-2000:]
    assert errors[0] == (
        "error: cannot reach the PostgreSQL catalog (host=127.0.0.1 port=1 dbname=prmforge user=postgres "
        'connect_timeout=5): connection to server at "127.0.0.1", port 1 failed: Connection refused '
        "(check PRMFORGE_CATALOG and that the server is up)"
    )


def test_a_policy_server_that_is_down_is_one_line_naming_it(prefect_server_env, tmp_path):
    """The console script against an OpenAI-compatible endpoint nobody listens on: one line that
    names the endpoint, a non-zero exit, nothing published. (Resuming from the generation cache
    after a server failure: tests/tasks/policies/test_openai_policy.py, against a real server.)"""
    endpoint = "http://127.0.0.1:9/v1"
    data_dir = tmp_path / "warehouse"
    result = subprocess.run(
        [PRMFORGE, "generate", "--problems", "2", "--samples", "1", "--rollouts", "1",
         "--policy", f"openai:{endpoint}/policy", "--data-dir", str(data_dir)],
        env={**prefect_server_env, "PRMFORGE_OPENAI_API_KEY": "test"}, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and endpoint in errors[0], result.stderr[-2000:]
    if (data_dir / "catalog.sqlite").exists():
        connection = connect(WarehouseConfig(data_dir=data_dir), read_only=True)
        try:
            assert connection.execute("SELECT count(*) FROM nodes").fetchone()[0] == 0
            assert connection.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0] == 0
        finally:
            connection.close()
