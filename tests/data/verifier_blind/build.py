"""Turns the blind corpus sources (every *.txt beside this file) into ProcessBench-format JSONL.

    python tests/data/verifier_blind/build.py          # writes <part>.jsonl for each <part>.txt
    python tests/data/verifier_blind/build.py --check  # exit 1 if a .jsonl is out of date

The source format is the one of tests/data/verifier_corpus/ (see its build.py); its parser is
reused here, so both corpora are read by one function. Only the standard library is used.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent
_SIBLING = HERE.parent / "verifier_corpus" / "build.py"


def _corpus_builder():
    spec = importlib.util.spec_from_file_location("verifier_corpus_build", _SIBLING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parts() -> list[str]:
    """The part names, one per source file, in name order."""
    return sorted(path.stem for path in HERE.glob("*.txt"))


def main(argv: list[str]) -> int:
    builder = _corpus_builder()
    stale = []
    for part in parts():
        rows = builder.parse_corpus((HERE / f"{part}.txt").read_text(encoding="utf-8"), f"{part}.txt")
        text = builder.jsonl(rows)
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
