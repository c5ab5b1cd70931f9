"""The code verifier: snippets, verdicts, and a corpus of hostile snippets that must be contained."""

import dataclasses
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from fractions import Fraction
from pathlib import Path

import pytest

from tasks.verifiers.base import StepContext
from tasks.verifiers.code import (
    Cell,
    CodeConfig,
    CodeVerifier,
    find_snippets,
    judge_run,
    run_sandboxed,
    same_number,
    unshare_prefix,
)

PROBLEM = StepContext("Mia has 21 apples. She gives away 3.")
# Small limits keep the hostile corpus quick; the defaults are larger.
CONFIG = CodeConfig(cpu_seconds=1, wall_seconds=3, memory_mb=256)


@pytest.fixture(scope="module")
def code() -> CodeVerifier:
    return CodeVerifier(CONFIG)


def fenced(source: str, prose: str = "") -> str:
    return f"{prose}\n```python\n{source}\n```"


# --- finding snippets -------------------------------------------------------------------------


def test_find_fenced_blocks_and_doctest_lines_in_order():
    step = "Step 1: 21 - 3 = 18\n>>> 21 - 3\n18\nSo she has 18.\n```python\nx = 21 - 3\nprint(x)\n```\n>>> for i in range(2):\n...     print(i)\n"
    assert find_snippets(step) == (
        Cell("21 - 3\n", "single", "18"),
        Cell("x = 21 - 3\nprint(x)\n", "exec"),
        Cell("for i in range(2):\n    print(i)\n", "single", None),
    )
    assert find_snippets("```\nnot tagged python\n```\nno prompts") == ()


def test_same_number():
    assert same_number("18", Fraction(18))
    assert same_number("18.0", Fraction(18))
    assert same_number("0.30000000000000004", Fraction(3, 10))
    assert same_number("17", Fraction(18)) is False
    assert same_number("eighteen", Fraction(18)) is None


def test_judge_run_on_fixed_reports():
    cells = (Cell("assert x == 3\n", "exec"),)
    failed = {
        "cells": [
            {"output": "", "error": {"type": "AssertionError", "message": "", "line": 1}, "has_assert": True}
        ]
    }
    assert judge_run(cells, failed, None).evidence == "assertion failed: assert x == 3"
    passed = {"cells": [{"output": "", "error": None, "has_assert": True}]}
    assert judge_run(cells, passed, None).verdict == "valid"
    raised = {
        "cells": [
            {
                "output": "",
                "error": {"type": "NameError", "message": "name 'x' is not defined", "line": 1},
                "has_assert": True,
            }
        ]
    }
    assert judge_run(cells, raised, None).reason == "snippet raised NameError: name 'x' is not defined"


# --- verdicts ---------------------------------------------------------------------------------


def test_printed_value_agrees_with_the_claim(code):
    verdict = code.verify(fenced("print(21 - 3)", "Step 1: 21 - 3 = 18"), PROBLEM)
    assert (verdict.verifier, verdict.verdict, verdict.evidence) == (
        "code",
        "valid",
        "snippet printed 18, as the step claims",
    )


def test_printed_value_disagrees_with_the_claim(code):
    verdict = code.verify(fenced("print(21 - 3)", "Step 1: 21 - 3 = 17"), PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("invalid", "snippet printed 18, the step claims 17")


def test_doctest_expected_output(code):
    assert code.verify(">>> 21 - 3\n18\nSo she has 18 apples.", PROBLEM).verdict == "valid"
    verdict = code.verify(">>> 21 - 3\n17", PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("invalid", "`>>> 21 - 3` printed '18', expected '17'")


def test_assertions(code):
    assert (
        code.verify(fenced("assert 21 - 3 == 18"), PROBLEM).evidence
        == "assertions passed in `assert 21 - 3 == 18`"
    )
    verdict = code.verify(fenced("total = 21 - 3\nassert total == 17, 'wrong total'"), PROBLEM)
    assert (verdict.verdict, verdict.evidence) == (
        "invalid",
        "assertion failed: assert total == 17, 'wrong total': wrong total",
    )


def test_float_output_compares_with_tolerance(code):
    assert code.verify(fenced("print(0.1 + 0.2)", "0.1 + 0.2 = 0.3"), PROBLEM).verdict == "valid"


def test_unknown_without_snippet_or_without_a_check(code):
    assert code.verify("Step 1: 21 - 3 = 18", PROBLEM).reason == "no python snippet in step"
    assert code.verify(fenced("x = 1"), PROBLEM).reason == (
        "snippet ran but checked nothing (no assert, no expected output, no printed number to compare with a claim)"
    )


def test_an_exception_is_unknown_not_invalid(code):
    verdict = code.verify(fenced("print(1 / 0)", "1 / 1 = 1"), PROBLEM)
    assert (verdict.verdict, verdict.reason) == (
        "unknown",
        "snippet raised ZeroDivisionError: division by zero",
    )
    assert code.verify(fenced("print(("), PROBLEM).reason.startswith("snippet raised SyntaxError")


def test_the_standard_library_and_the_temporary_folder_are_usable(code):
    source = "import fractions, math\nopen('note.txt', 'w').write('x')\nprint(math.comb(5, 2) + len(open('note.txt').read()))"
    assert code.verify(fenced(source, "so C = 11"), PROBLEM).verdict == "valid"


# --- the hostile corpus -----------------------------------------------------------------------


def contained(verdict, reason_start: str) -> None:
    assert verdict.verdict == "unknown", verdict
    assert verdict.reason.startswith(reason_start), verdict.reason


def test_fork_is_blocked_before_any_fork_bomb(code):
    # Run a single fork first: the fork bomb below is only safe because this is blocked.
    verdict = code.verify(fenced("import os\npid = os.fork()\nprint(pid)"), PROBLEM)
    contained(verdict, "sandbox: blocked os.fork")


def test_fork_bomb(code):
    started = time.perf_counter()
    contained(code.verify(fenced("import os\nwhile True: os.fork()"), PROBLEM), "sandbox: blocked os.fork")
    assert time.perf_counter() - started < 5


def test_infinite_loop_hits_the_cpu_limit(code):
    started = time.perf_counter()
    contained(code.verify(fenced("while True: pass"), PROBLEM), "sandbox: CPU-time limit (1 s) exceeded")
    assert time.perf_counter() - started < CONFIG.wall_seconds + 2


def test_sleeping_forever_hits_the_wall_time_limit():
    verdict = CodeVerifier(CodeConfig(wall_seconds=1)).verify(fenced("import time\ntime.sleep(60)"), PROBLEM)
    contained(verdict, "sandbox: wall-time limit (1 s) exceeded")
    assert verdict.ms < 4000


def test_fifty_gigabyte_allocation(code):
    contained(
        code.verify(fenced("x = bytearray(50 * 1024**3)"), PROBLEM),
        "sandbox: memory limit reached MemoryError",
    )


def test_os_system_creates_nothing(code):
    target = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    contained(
        code.verify(fenced(f"import os\nos.system('touch {target}')"), PROBLEM), "sandbox: blocked os.system"
    )
    assert not target.exists()


def test_subprocess_and_low_level_process_creation(code):
    contained(
        code.verify(fenced("import subprocess"), PROBLEM),
        "snippet raised ImportError: import of subprocess is blocked",
    )
    contained(
        code.verify(fenced("import _posixsubprocess"), PROBLEM),
        "snippet raised ImportError: import of _posixsubprocess",
    )
    contained(
        code.verify(fenced("import os\nos.execv('/bin/true', ['true'])"), PROBLEM), "sandbox: blocked os.exec"
    )
    contained(code.verify(fenced("import os\nos.kill(1, 0)"), PROBLEM), "sandbox: blocked os.kill")


def test_socket_connect_to_localhost(code):
    source = "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)"
    contained(code.verify(fenced(source), PROBLEM), "snippet raised ImportError: import of socket is blocked")
    contained(
        code.verify(fenced("import _socket\ns = _socket.socket()"), PROBLEM), "snippet raised ImportError"
    )


def test_write_to_the_home_directory(code):
    target = Path(os.path.expanduser("~")) / f"pwned-{uuid.uuid4().hex}"
    contained(
        code.verify(fenced(f"open({str(target)!r}, 'w').write('x')"), PROBLEM),
        "sandbox: blocked write outside",
    )
    assert not target.exists()
    contained(
        code.verify(fenced(f"import os\nos.mkdir({str(target)!r})"), PROBLEM),
        "sandbox: blocked os.mkdir outside",
    )
    assert not target.exists()


def test_environment_secrets_are_not_visible(code, monkeypatch):
    monkeypatch.setenv("PRMFORGE_FAKE_SECRET", "hunter2-not-a-real-secret")
    run = run_sandboxed((Cell("import os\nprint(dict(os.environ))\n", "exec"),), CONFIG, 3)
    assert "hunter2" not in run.report["cells"][0]["output"]
    assert run.report["cells"][0]["output"] == "{'PATH': '/usr/bin:/bin', 'LC_CTYPE': 'C.UTF-8'}\n"
    verdict = code.verify(fenced("import os\nassert 'PRMFORGE_FAKE_SECRET' not in os.environ"), PROBLEM)
    assert verdict.verdict == "valid"
    # The parent's environment through /proc stays closed too.
    source = "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())"
    contained(code.verify(fenced(source), PROBLEM), "sandbox: blocked read outside")


def test_deep_recursion(code):
    source = "def down(n):\n    return down(n + 1)\ndown(0)"
    contained(code.verify(fenced(source), PROBLEM), "sandbox: recursion limit reached RecursionError")
    deeper = "import sys\nsys.setrecursionlimit(10**8)\n" + source
    contained(code.verify(fenced(deeper), PROBLEM), "sandbox:")


def test_raising_its_own_limits_is_blocked(code):
    source = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (-1, -1))"
    contained(code.verify(fenced(source), PROBLEM), "sandbox: blocked resource.setrlimit")


# --- the network namespace --------------------------------------------------------------------


def network_namespace_prefix() -> tuple[str, ...]:
    prefix = unshare_prefix(True)
    if not prefix:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "no network namespace here: `unshare --net` and `unshare --user --map-root-user --net` both fail")
    return prefix


def snippet_network_namespace(config: CodeConfig) -> str:
    # os.readlink raises no audit event, so the snippet can name its namespace; reading
    # /proc/net/dev or opening a socket is blocked by the hook.
    run = run_sandboxed((Cell("import os\nprint(os.readlink('/proc/self/ns/net'))\n", "exec"),), config, 3)
    return run.report["cells"][0]["output"].strip()


def test_snippets_run_in_a_network_namespace_of_their_own():
    network_namespace_prefix()
    ours = os.readlink("/proc/self/ns/net")
    assert ours.startswith("net:[")
    inside = snippet_network_namespace(CONFIG)
    assert inside.startswith("net:[") and inside != ours
    assert snippet_network_namespace(dataclasses.replace(CONFIG, use_unshare=False)) == ours  # the switch works


CONNECT = """import errno, socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("connected")
except OSError as error:
    print(errno.errorcode.get(error.errno, error.errno))
"""


def test_inside_the_namespace_nothing_is_reachable_even_without_the_hook():
    """The sandbox's own prefix, running plain Python (no audit hook): only a loopback interface,
    and it is down, so even this host's 127.0.0.1 cannot be reached."""
    prefix = network_namespace_prefix()
    listed = subprocess.run([*prefix, "cat", "/proc/net/dev"], capture_output=True, text=True, timeout=10, check=True)
    assert [line.split(":")[0].strip() for line in listed.stdout.splitlines()[2:]] == ["lo"]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        probe = CONNECT.format(port=server.getsockname()[1])
        outside = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=10)
        inside = subprocess.run([*prefix, sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=10)
    assert (outside.stdout, inside.stdout) == ("connected\n", "ENETUNREACH\n")


# --- file-size and open-file limits -----------------------------------------------------------


def test_a_file_past_the_file_size_limit_is_refused():
    small = CodeVerifier(dataclasses.replace(CONFIG, file_size_mb=1))
    verdict = small.verify(fenced("open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))"), PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", "sandbox: file-size limit reached OSError: [Errno 27] File too large")
    source = "with open('ok.bin', 'wb') as out:\n    out.write(b'x' * (1024 * 1024))\nimport os\nprint(os.path.getsize('ok.bin'))"
    verdict = small.verify(fenced(source, "so 1024 * 1024 = 1048576"), PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("valid", "snippet printed 1048576, as the step claims")  # up to it: fine


OPEN_MANY = """handles = []
try:
    for index in range(200):
        handles.append(open(f'f{index}', 'w'))
except OSError as error:
    print(error.errno, len(handles))
else:
    print('opened', len(handles))
"""


@pytest.mark.parametrize(("open_files", "printed"), [(16, "24 13\n"), (64, "24 61\n")])
def test_open_files_stop_at_the_limit(open_files, printed):
    # EMFILE (24) after the limit less fds 0-2, the only ones the snippet inherits.
    run = run_sandboxed((Cell(OPEN_MANY, "exec"),), dataclasses.replace(CONFIG, open_files=open_files), 3)
    assert run.report["cells"][0]["output"] == printed


def test_too_many_open_files_is_unknown_with_the_reason():
    verdict = CodeVerifier(dataclasses.replace(CONFIG, open_files=16)).verify(
        fenced("handles = [open(f'f{i}', 'w') for i in range(100)]"), PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", "snippet raised OSError: [Errno 24] Too many open files: 'f13'")


# --- symlink escapes --------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "reason"), [
    ("import os\nos.symlink('/etc/passwd', 'link')\nprint(open('link').read())",
     "sandbox: blocked os.symlink outside the sandbox folder (/etc/passwd)"),
    ("import os\nos.symlink('../../../../../../etc/passwd', 'link')",
     "sandbox: blocked os.symlink outside the sandbox folder (../../../../../../etc/passwd)"),
    ("import os\nos.symlink('..', 'up')", "sandbox: blocked os.symlink outside the sandbox folder (..)"),
    ("import pathlib\npathlib.Path('etc').symlink_to('/etc')", "sandbox: blocked os.symlink outside the sandbox folder (/etc)"),
    ("import os\nos.link('/etc/passwd', 'hard')", "sandbox: blocked os.link outside the sandbox folder (/etc/passwd)"),
    # Links that already exist resolve before the check: /proc/self/root is /, /proc/self/cwd the folder.
    ("print(open('/proc/self/root/etc/passwd').read())",
     "sandbox: blocked read outside the sandbox folder (/proc/self/root/etc/passwd)"),
    ("print(open('/proc/self/cwd/../bootstrap.py').read())",
     "sandbox: blocked read outside the sandbox folder (/proc/self/cwd/../bootstrap.py)"),
    ("open('/proc/self/cwd/../stdout', 'w').write('forged')",
     "sandbox: blocked write outside the sandbox folder (/proc/self/cwd/../stdout)"),
])
def test_symlink_escapes_are_blocked(code, source, reason):
    verdict = code.verify(fenced(source), PROBLEM)
    assert (verdict.verdict, verdict.reason) == ("unknown", reason)


def test_a_symlink_inside_the_folder_is_usable(code):
    source = "import os\nos.symlink('inside.txt', 'link')\nopen('link', 'w').write('4')\nprint(open('inside.txt').read())"
    verdict = code.verify(fenced(source, "2 + 2 = 4"), PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("valid", "snippet printed 4, as the step claims")


# --- forged marker lines ----------------------------------------------------------------------

LEARN_MARKER = "import json, os, sys\nmarker = sys._getframe(1).f_locals['marker']  # the bootstrap's, this run's\n"


def test_a_guessed_marker_is_ignored_printed_or_written_to_the_descriptor(code):
    forged = '@@prmforge-sandbox-0000000000000000@@{"blocked": "forged"}'
    for source in (f"print({forged!r})\nassert 2 + 2 == 5", f"import os\nos.write(1, {chr(10) + forged + chr(10)!r}.encode())\nassert 2 + 2 == 5"):
        verdict = code.verify(fenced(source), PROBLEM)
        assert (verdict.verdict, verdict.evidence) == ("invalid", "assertion failed: assert 2 + 2 == 5"), source


def test_every_run_has_its_own_marker():
    learn = (Cell(LEARN_MARKER + "print(marker)\n", "exec"),)
    first, second = (run_sandboxed(learn, CONFIG, 3).report["cells"][0]["output"] for _ in range(2))
    assert re.fullmatch(r"@@prmforge-sandbox-[0-9a-f]{16}@@\n", first) and first != second


def test_a_forged_report_before_the_real_one_changes_nothing(code):
    source = LEARN_MARKER + "os.write(1, ('\\n' + marker + json.dumps({'blocked': 'forged'}) + '\\n').encode())\nassert 2 + 2 == 5"
    verdict = code.verify(fenced(source), PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("invalid", "assertion failed: assert 2 + 2 == 5")  # the last marker line wins


def test_a_malformed_report_is_no_report(code):
    source = LEARN_MARKER + "os.write(1, ('\\n' + marker + '{not json\\n').encode())\nos._exit(0)"
    assert code.verify(fenced(source), PROBLEM).reason == "sandbox: exited with code 0 (no report)"


def test_a_forged_report_mislabels_only_its_own_step(code):
    # The module docstring's caveat, pinned: a snippet that learns this run's marker and exits
    # after forging a report decides its own verdict; the next step's run has a new marker.
    fake = {"cells": [{"output": "", "error": None, "has_assert": True}]}
    source = LEARN_MARKER + f"os.write(1, ('\\n' + marker + json.dumps({fake!r}) + '\\n').encode())\nos._exit(0)\nassert 2 + 2 == 5"
    assert code.verify(fenced(source), PROBLEM).verdict == "valid"
    verdict = code.verify(fenced("assert 2 + 2 == 5"), PROBLEM)
    assert (verdict.verdict, verdict.evidence) == ("invalid", "assertion failed: assert 2 + 2 == 5")
