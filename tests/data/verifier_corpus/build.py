"""Turns the hand-written corpus sources (dev.txt, heldout.txt) into ProcessBench-format JSONL.

    python tests/data/verifier_corpus/build.py          # writes dev.jsonl and heldout.jsonl
    python tests/data/verifier_corpus/build.py --check  # exit 1 if a .jsonl is out of date

Source format, one solution after another:

    === <id>
    problem:
    <problem text, one or more lines>
    --- valid | <tags>
    <step text, one or more lines>
    --- invalid | <tags>
    <step text>

`valid` / `invalid` is the step's gold verdict: is the step itself right, given the steps before
it? A step that computes correctly from a value an earlier step got wrong is `valid`. The row's
`label` is the first `invalid` step (-1 if none), as in ProcessBench. Tags after `|` say which
trap or mistake the step carries; they are kept for reading, not used in scoring. Lines starting
with `#` outside a step are comments. Only the standard library is used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
PARTS = ("dev", "heldout")
GOLD = ("valid", "invalid")


def parse_corpus(text: str, source: str = "<text>") -> list[dict]:
    """The rows of one source file, in order; ValueError names the line of a format error."""
    rows: list[dict] = []
    current: dict | None = None
    block: list[str] | None = None

    def close_block() -> None:
        if current is not None and block is not None:
            body = "\n".join(block).strip("\n")
            if not body.strip():
                raise ValueError(f"{source}: empty block in {current['id']}")
            if current["problem"] is None:
                current["problem"] = body
            else:
                current["steps"].append(body)

    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("=== "):
            close_block()
            current = {"id": line[4:].strip(), "problem": None, "steps": [], "step_gold": [], "tags": []}
            rows.append(current)
            block = None
        elif line.strip() == "problem:" and current is not None and current["problem"] is None and block is None:
            block = []
        elif line.startswith("--- "):
            if current is None or (current["problem"] is None and block is None):
                raise ValueError(f"{source}:{number}: a step before its problem")
            close_block()
            head, _, tags = line[4:].partition("|")
            if head.strip() not in GOLD:
                raise ValueError(f"{source}:{number}: gold verdict must be valid or invalid, got {head.strip()!r}")
            current["step_gold"].append(head.strip())
            current["tags"].append(sorted(tags.split()))
            block = []
        elif block is not None:
            block.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"{source}:{number}: text outside a block")
    close_block()
    for row in rows:
        if not row["steps"]:
            raise ValueError(f"{source}: {row['id']} has no steps")
        row["label"] = row["step_gold"].index("invalid") if "invalid" in row["step_gold"] else -1
    ids = [row["id"] for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source}: duplicate ids")
    return [
        {key: row[key] for key in ("id", "problem", "steps", "label", "step_gold", "tags")} for row in rows
    ]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main(argv: list[str]) -> int:
    stale = []
    for part in PARTS:
        text = jsonl(parse_corpus((HERE / f"{part}.txt").read_text(encoding="utf-8"), f"{part}.txt"))
        target = HERE / f"{part}.jsonl"
        if "--check" in argv:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python {Path(__file__)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
