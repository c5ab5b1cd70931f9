"""`prmforge generate --seeds FILE` as a user runs it: bad rows land in quarantine, valid rows in
problems, and a file that cannot be read stops the run with one line and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PRMFORGE = str(Path(sys.executable).parent / "prmforge")
ROOT = Path(__file__).resolve().parents[2]
# GSM8K form, in the synthetic problems' wording so that the simulated policy can solve them.
GOOD = [
    {"question": "Mia has 14 apples. She gets 7 more. She gives away 3. How many apples does Mia have now?",
     "answer": "14 + 7 = 21, 21 - 3 = 18\n#### 18"},
    {"question": "Sam has 9 coins. Then he has 2 times as many. How many coins does Sam have now?",
     "answer": "9 * 2 = 18\n#### 18"},
]


def prmforge(env: dict, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([PRMFORGE, *arguments], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def rows(env: dict, data_dir: Path, query: str) -> list[dict]:
    result = prmforge(env, "sql", query, "--format", "json", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_bad_rows_are_quarantined_and_valid_rows_are_labelled(prefect_server_env, tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    with seeds.open("wb") as out:
        out.write((json.dumps(GOOD[0]) + "\n").encode())
        out.write(b'{"question": "cut off\n')  # malformed JSON
        out.write((json.dumps({"question": "Ava has 3 pens. How many pens does Ava have now?"}) + "\n").encode())
        out.write((json.dumps(GOOD[1]) + "\n").encode())
    data_dir = tmp_path / "warehouse"

    result = prmforge(prefect_server_env, "generate", "--seeds", str(seeds), "--policy", "simulated",
                      "--samples", "2", "--rollouts", "2", "--data-dir", str(data_dir))

    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 problems (2 quarantined rows)" in " ".join(result.stdout.split())
    problems = rows(prefect_server_env, data_dir, "select question, answer from problems order by answer, question")
    assert sorted(problem["question"] for problem in problems) == sorted(row["question"] for row in GOOD)
    assert {problem["answer"] for problem in problems} == {"18"}
    quarantined = rows(prefect_server_env, data_dir, "select source_row, reason from quarantine order by source_row")
    assert [row["source_row"] for row in quarantined] == [2, 3]
    assert "json" in quarantined[0]["reason"].lower() and "answer" in quarantined[1]["reason"].lower()
    labelled = rows(prefect_server_env, data_dir, "select count(*) as steps, count(mc_q) as labelled from labeled_steps")
    assert labelled[0]["steps"] == labelled[0]["labelled"] > 0


def test_a_missing_seed_file_is_one_line_and_writes_nothing(prefect_server_env, tmp_path):
    data_dir = tmp_path / "warehouse"

    result = prmforge(prefect_server_env, "generate", "--seeds", str(tmp_path / "absent.jsonl"),
                      "--policy", "simulated", "--data-dir", str(data_dir))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "absent.jsonl" in errors[0], result.stderr[-2000:]
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_synthetic_problem_length_and_the_test_split_come_from_flags(prefect_server_env, tmp_path):
    from tasks.synthetic import generate_problems

    data_dir = tmp_path / "warehouse"
    result = prmforge(prefect_server_env, "generate", "--problems", "6", "--min-steps", "3", "--max-steps", "4",
                      "--test-fraction", "0.5", "--policy", "simulated", "--samples", "1", "--rollouts", "1",
                      "--seed", "7", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    stored = rows(prefect_server_env, data_dir, "select problem_id, len(reference_steps) as steps from problems")
    expected = generate_problems(6, 7, 3, 4)
    assert sorted(row["problem_id"] for row in stored) == sorted(problem.problem_id for problem in expected)
    assert {row["steps"] for row in stored} <= {3, 4}
    (config,) = rows(prefect_server_env, data_dir, "select config_json from runs where flow = 'generate'")
    assert json.loads(config["config_json"])["test_fraction"] == 0.5
    bad = prmforge(prefect_server_env, "generate", "--problems", "2", "--min-steps", "0", "--data-dir", str(data_dir))
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: invalid option min_steps")
