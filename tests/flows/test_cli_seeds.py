"""`prmforge generate --seeds FILE` as a user runs it: bad rows land in quarantine, valid rows in
problems, and a file that cannot be read stops the run with one line and writes nothing."""

from __future__ import annotations

import json
import re
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


# MATH form: two short problems and two that no embedded prompt can hold (its context is 256 tokens).
SHORT_MATH = [
    {"problem": "Mia has 14 apples. She gets 7 more. How many apples does Mia have now?",
     "solution": "14 + 7 = 21, so $\\boxed{21}$."},
    {"problem": "Sam has 9 coins. Then he has 2 times as many. How many coins does Sam have now?",
     "solution": "$9 \\cdot 2 = \\boxed{18}$"},
]
LONG_MATH = [
    {"problem": "Let $f(x) = " + " + ".join(f"{k}x^{{{k}}}" for k in range(1, 60)) + "$. Find $f(1)$.",
     "solution": "The sum of 1 to 59 is $\\boxed{1770}$."},
    {"problem": "A sequence is defined by " + ", ".join(f"$a_{{{k}}} = {k * k}$" for k in range(1, 40))
     + ". What is $a_{3}$?", "solution": "$\\boxed{9}$"},
]


def test_problems_longer_than_the_context_are_quarantined_and_the_rest_run(prefect_server_env, tmp_path):
    seeds = tmp_path / "math.jsonl"
    seeds.write_text("".join(json.dumps(row) + "\n" for row in [SHORT_MATH[0], *LONG_MATH, SHORT_MATH[1]]))
    data_dir = tmp_path / "warehouse"

    result = prmforge(prefect_server_env, "generate", "--seeds", str(seeds), "--samples", "2", "--rollouts", "2",
                      "--data-dir", str(data_dir))

    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 problems (2 quarantined rows)" in " ".join(result.stdout.split())
    quarantined = rows(prefect_server_env, data_dir, "select source_row, reason from quarantine order by source_row")
    assert [row["source_row"] for row in quarantined] == [2, 3]
    for row in quarantined:  # the policy, the prompt's tokens and the limit
        assert re.fullmatch(
            r"prompt does not fit the policy's context: policy transformers:\S+/embedded, prompt (\d+) tokens "
            r"\+ 160 new tokens \(max_new_tokens\) > context 256 tokens", row["reason"]), row["reason"]
        assert int(re.search(r"prompt (\d+) tokens", row["reason"])[1]) + 160 > 256
    problems = rows(prefect_server_env, data_dir, "select question from problems")
    assert sorted(problem["question"] for problem in problems) == sorted(row["problem"] for row in SHORT_MATH)
    labelled = rows(prefect_server_env, data_dir, "select count(*) as steps, count(mc_q) as labelled from labeled_steps")
    assert labelled[0]["steps"] == labelled[0]["labelled"] > 0


def test_a_policy_that_cannot_solve_the_seeds_says_so_in_one_line_and_writes_nothing(prefect_server_env, tmp_path):
    seeds = tmp_path / "gsm8k.jsonl"
    seeds.write_text(json.dumps({
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                    "How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether.\n#### 72",
    }) + "\n" + json.dumps(GOOD[0]) + "\n")
    data_dir = tmp_path / "warehouse"

    result = prmforge(prefect_server_env, "generate", "--seeds", str(seeds), "--policy", "simulated",
                      "--data-dir", str(data_dir))

    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith("error: the simulated policy solves only prmforge's synthetic arithmetic questions; "
                                "1 of 2 problems are not (gsm8k form; e.g. row 1 of ")
    assert "use --policy embedded" in errors[0]
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
