"""Real processes against one warehouse: two writers, readers while writing, and Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from schemas.config import WarehouseConfig
from warehouse.connection import connect
from warehouse.fingerprint import duplicate_keys

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
ROOT = Path(__file__).resolve().parents[2]


def generate(data_dir: Path, env: dict, problems: int = 40, seed: int = 3) -> subprocess.Popen:
    return subprocess.Popen(
        [PRMFORGE, "generate", "--problems", str(problems), "--samples", "4", "--rollouts", "8", "--seed", str(seed),
         "--policy", "simulated:error_rate=0.2", "--data-dir", str(data_dir)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_stage(process: subprocess.Popen, stage: str, timeout: float = 120) -> list[str]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith(f"[stage] {stage}"):
            return seen
    raise AssertionError(f"stage {stage!r} never started: {''.join(seen)[-2000:]}")


def test_second_writer_refuses_and_readers_see_the_last_commit(prefect_server_env, tmp_path):
    data_dir = tmp_path / "warehouse"
    first = generate(data_dir, prefect_server_env)
    wait_for_stage(first, "labelling")
    second = generate(data_dir, prefect_server_env, seed=4)
    readings = []
    while first.poll() is None:
        reader = subprocess.run([PRMFORGE, "sql", "select count(*) from nodes", "--format", "csv", "--data-dir", str(data_dir)],
                                env=prefect_server_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        readings.append((reader.returncode, reader.stdout.strip(), reader.stderr.strip()))
    _, second_err = second.communicate(timeout=300)
    assert first.wait() == 0
    assert second.returncode == 1
    error_lines = [line for line in second_err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "is writing to" in error_lines[0]
    assert "Traceback" not in second_err
    assert readings and all(code == 0 for code, _, _ in readings), readings
    # Before the run commits, a reader sees the empty warehouse; never a half-written one.
    counts = {int(out.splitlines()[-1]) for _, out, _ in readings}
    connection = connect(WarehouseConfig(data_dir=data_dir), read_only=True)
    final = connection.execute("SELECT count(*) FROM nodes").fetchone()[0]
    assert not any(duplicate_keys(connection).values())
    connection.close()
    assert counts <= {0, final}


def test_ctrl_c_stops_with_one_line_and_publishes_nothing(prefect_server_env, tmp_path):
    data_dir = tmp_path / "warehouse"
    process = generate(data_dir, prefect_server_env)
    wait_for_stage(process, "labelling")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    connection = connect(WarehouseConfig(data_dir=data_dir), read_only=True)
    assert connection.execute("SELECT count(*) FROM nodes").fetchone()[0] == 0
    connection.close()
