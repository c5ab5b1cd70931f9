"""Short probes of the invalid gate (tasks/verifiers/gate.py): hedged correct text and plain errors.

Written while the gate was designed (not blind), in the forms of the issue and of model text
that the role reader misses: a relation in a sentence that denies it, a rounded product
"about" its value, a modulus another sentence writes, a name bound twice, `\\gcd`. Each probe
says whether its text is correct, so an `invalid` on it is a false alarm. Prints, for the
baseline revision's verifiers and the working tree's, the verdict counts on correct text and
on errors.

Usage: .venv/bin/python bench/gate_probes.py [--baseline main]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from verifiers import baseline_package, load  # noqa: E402

from tasks.verifiers.base import StepContext  # noqa: E402

# (problem, earlier steps, step, whether the step's text is correct)
P = "Find all positive integers n such that 2^n > n^2 + 3."
C = "Compute."
PROBES = [
 (P, ["Let's test small values. n = 1 gives 2 > 4."], "For n = 2 we get 4 > 7, so n = 2 does not work.", True),
 (P, [], "(1 + 1)(2 + 2) < 1 \\cdot 1 + 2 \\cdot 2 would mean 8 < 5, a contradiction.", True),
 (P, [], "That is $8 < 5$ — impossible, so this case cannot occur.", True),
 ("Solve for x.", ["We have $x = 3$."], "This happens when $x = 0$, and then $2x + 1 = 1$.", True),
 ("Solve for x.", ["We have $x = 3$."], "In the second case $x = 0$, giving $2x + 1 = 1$.", True),
 ("Solve for x.", ["We have $x = 3$."], "Now consider the other root: $x = -1$, so $x^2 = 1$.", True),
 ("A sequence has x_1 = 2 and x_{n+1} = x_n + 3.", ["So $x_2 = 5$."], "In general $x_n = 3n - 1$, so $x_n + 1 = 3n$.", True),
 ("Find primes p.", [], "1. p = 2 or p = 3\n2. p = 5", True),
 ("Find a mod 5.", ["We have $a = 3 - b^5$."], "If $b \\mod 5 = 3$ then $a = 3 - 243 = -240$, so $a \\mod 5 = 0$.", True),
 ("The cubic x^3 + 2x^2 - 7x + 1 = 0 has roots x1, x2, x3.", [], "The coefficient of x is -7, so $x_1x_2 + x_1x_3 + x_2x_3 = -7$.", True),
 (C, ["So $n = 5$."], "Is $n^2 = 24$? No, $n^2 = 25$.", True),
 (C, [], "Checking: $3^4 = 81 \\ne 80$, so 80 is not a power of 3.", True),
 (C, [], "Suppose $2^{10} = 1000$; then the estimate is close.", True),
 (C, [], "So $\\pi r^2 \\approx 3.14 \\times 4 = 12.6$.", True),
 (C, [], "So 1/3 of 90 is about 0.33 × 90 = 30.", True),
 (C, [], "Then 7 × 8 = 54.", False),
 (C, [], "So $2(5) = 7$.", False),
 (C, ["So $a = 4$."], "For the next term, $a = 6$, so $a + 1 = 7$.", True),
 ("Let x = 5. Find 2x. Then, for a new x = 3, find x + 1.", ["First, 2x = 10."], "Now x = 3, so x + 1 = 4.", True),
 ("Let x = 5. Find 2x.", ["First, 2x = 10."], "Next take x = 3: then x + 1 = 4.", True),
 ("Find 2^{10} mod 7 and 10 mod 9.", ["$2^3 = 8 \\equiv 1 \\pmod 7$."], "So $2^{10} \\equiv 2 \\pmod 7$. Also $10 \\equiv 1$.", True),
 (C, [], "It is not hard to see that 7 × 8 = 56.", True),
 (C, [], "It is not hard to see that 7 × 8 = 55.", False),
 (C, [], "The sum 4 + 5 = 10 isn't right; 4 + 5 = 9.", True),
 (C, [], "So 0.3 × 0.2 = 0.6.", False),
 (C, [], "So $\\sqrt{2} \\approx 1.41$ and $3 \\times 1.41 = 4.2$.", True),
 ("Sequence a_n = 2n.", ["$a_1 = 2$, $a_2 = 4$."], "Then $a_n + a_1 = 2n + 3$.", False),
 (C, [], "That is 16 < 5, which is clearly not so.", True),
 (C, [], "Then 4 + 5 = 10 gives a contradiction with the count.", True),
 (C, [], "If we add them we get 4 + 5 = 10.", False),
 (C, [], "Doubling would give 2 × 6 = 13 here.", False),
 (C, [], "So 3^4 = 80 and 80 ≠ 81.", False),
 (C, [], "So $16 + 12 + 1 = 27$, which is not prime.", False),
 ("Let a + b = 5 and ab = 6.", [], "Then $(a + b)^2 - 2ab = 14$.", False),
 ("Solve 3x - 3 > 0.", [], "So $x < 0$.", False),
 ("Find a.", ["So $a = 4$."], "For the next term, we have $a + 1 = 7$.", True),
 ("Find a.", ["So $a = 4$."], "So we have $a + 1 = 7$.", False),
 (C, [], "So $1.08^5 \\approx 1.3605$.", False),
 (C, [], "So $\\gcd(252, 198) = 2$.", False),
 ("Let x = 12.", [], "x = 13", False),
 (C, [], "Note that $n^2 + 15 = (n + 3)(n - 3) + 6$.", False),
 ("Let x_1 = 1 and x_{n+1} = 2x_n + 1.", ["So x_2 = 3.", "Then x_3 = 7."], "Now x_n = 2^n - 1, so for the next one x_(n+1) = 2x_n + 1 = 15.", True),
 ("Find all b.", ["We have $a = 3 - b^5$.", "For $b = 2$: $a = 3 - 32 = -29$."], "When b = 3, a = 3 - 243 = -240, so a mod 5 = 0.", True),
 ("Find n with n^2 < 20.", ["For $n = 4$: $16 < 20$."], "We continue for $n = 5, 6$: $25 > 20$ and $36 > 20$, so $n \\le 4$.", True),
 ("Show the inequality for n.", ["For $n = 1$: $3 > 2$."], "For $n = 2$, the inequality becomes $n^2 + 1 = 5 > 4$.", True),
]


def counts(verifiers: list) -> Counter:
    found: Counter = Counter()
    for problem, earlier, step, correct in PROBES:
        for verifier in verifiers:
            verdict = verifier.verify(step, StepContext(problem, tuple(earlier)))
            found[verifier.name, "correct" if correct else "error", verdict.verdict] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="main", help="git revision of the verifiers to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="prmforge-baseline-") as folder:
        before = counts(load(baseline_package(args.baseline, Path(folder))))
        after = counts(load("tasks.verifiers"))
    correct = sum(row[3] for row in PROBES)
    print(f"{len(PROBES)} probes: {correct} correct, {len(PROBES) - correct} with an error")
    print("| verifier | code | invalid on correct text (false alarms) | errors found (invalid) | unknown |")
    print("|---|---|---|---|---|")
    for name in ("arith", "z3"):
        for label, found in (("before", before), ("after", after)):
            unknown = found[name, "correct", "unknown"] + found[name, "error", "unknown"]
            print(f"| {name} | {label} | {found[name, 'correct', 'invalid']}/{correct} | "
                  f"{found[name, 'error', 'invalid']}/{len(PROBES) - correct} | {unknown} |")


if __name__ == "__main__":
    main()
