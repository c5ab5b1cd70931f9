"""Runs the Python snippets of a step in a sandboxed subprocess and compares what they compute.

Snippets. A step's snippets are its ```python (or ```py) fenced blocks and its doctest lines: a
`>>> ` line (with `... ` continuations) is one example, and the single next line, unless it is
blank or another prompt, is its expected output. Only one line is taken, so the prose after an
example is never mistaken for output. All snippets of a step run in order in one namespace.

Verdict.
- invalid: an `assert` fails; a doctest example prints something other than its expected line;
  or the last line the snippets print is a number that differs from the step's claimed result
  (the right side of the last equality in the step's prose that evaluates exactly).
- valid: the snippets ran, at least one of those checks was made, and all passed.
- unknown: no snippet; the snippets ran but checked nothing; a syntax error or another exception
  (the code may be wrong while the step is right); or the sandbox stopped it. The reason names
  the limit: wall time, CPU time, memory, file size, a blocked call, or a crash.
Numbers compare exactly when both are integers or fractions; a printed decimal is a float
result and compares within a relative 1e-9, so 0.30000000000000004 matches a claimed 0.3.

Sandbox (layers; each one bounds what the others miss):
- `python -I -S -B`: isolated mode, no site, no user paths, no bytecode writes. The environment
  is empty but for a minimal PATH, so no secret is inherited; stdin is /dev/null; only fds 0-2
  are open.
- cwd is a fresh temporary folder, deleted afterwards; stdout/stderr go to files beside it.
- rlimits set in preexec_fn: CPU time, address space, file size, open files, processes.
  RLIMIT_NPROC is not enforced for root, so it is a backstop for non-root users only.
- an audit hook (PEP 578), installed by a bootstrap before the snippet runs, ends the process
  at once with a report on: process creation (os.system, os.exec*, os.fork, os.posix_spawn,
  subprocess), signals to other processes, sockets, ctypes, raising rlimits, writes outside the
  temporary folder, and reads outside it and the standard library (so /proc/*/environ and
  home directories stay closed). Importing subprocess, multiprocessing, socket, ctypes or pty
  raises ImportError (a library that imports one optionally still loads).
  Snippets get the standard library only. sympy cannot be offered: it imports ctypes and
  subprocess at start-up, and either one gives a way around the hook (ctypes.memmove and
  _posixsubprocess.fork_exec raise no audit event). A snippet that needs it is unknown.
- `unshare --net` (as root) or `unshare --user --map-root-user --net` (user namespaces), when
  one works here: a network namespace whose only interface is a down loopback, so nothing can
  be reached even if the hook were bypassed. Without either, the hook alone blocks sockets.
- a wall-time limit: the whole process group is killed with SIGKILL.
Audit hooks are not a security boundary against code written to escape them (PEP 578 says so):
this is containment for model-written arithmetic, not a jail for adversaries. For that, run
prmforge inside a container or VM.

The report channel is a marker line on stdout; a snippet could forge it, which would only
mislabel its own step.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from schemas.records import Verdict
from tasks.verifiers.base import INVALID, UNKNOWN, VALID, Deadline, StepContext, run_guarded

BLOCKED_EXIT_CODE = 86
MAX_SNIPPET_CHARS = 20_000
FLOAT_RELATIVE_TOLERANCE = Fraction(1, 10**9)


@dataclass(frozen=True)
class CodeConfig:
    wall_seconds: float = field(default=5.0, metadata={"help": "wall-time limit for one step's snippets"})
    cpu_seconds: int = field(default=2, metadata={"help": "CPU-time limit (RLIMIT_CPU)"})
    memory_mb: int = field(default=512, metadata={"help": "address-space limit (RLIMIT_AS)"})
    file_size_mb: int = field(
        default=16, metadata={"help": "largest file the snippet may write (RLIMIT_FSIZE)"}
    )
    open_files: int = field(default=64, metadata={"help": "open file descriptors (RLIMIT_NOFILE)"})
    extra_processes: int = field(
        default=4, metadata={"help": "processes above the user's current count (RLIMIT_NPROC)"}
    )
    use_unshare: bool = field(default=True, metadata={"help": "run inside `unshare --net` when it works"})
    python: str = field(default=sys.executable, metadata={"help": "interpreter that runs the snippets"})


# ---------------------------------------------------------------------------------------------
# Finding snippets


@dataclass(frozen=True)
class Cell:
    """One unit of code: a fenced block (exec) or a doctest example (single, prints its value)."""

    source: str
    mode: str  # "exec" or "single"
    expected: str | None = None  # doctest's expected output line


_FENCED = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_PROMPT = re.compile(r"^[ \t]*>>> ?(.*)$")
_CONTINUATION = re.compile(r"^[ \t]*\.\.\. ?(.*)$")


def find_snippets(step_text: str) -> tuple[Cell, ...]:
    """The step's code cells, in order of appearance.

    >>> [c.expected for c in find_snippets(">>> 21 - 3\\n18\\nSo she has 18.")]
    ['18']
    """
    found: list[tuple[int, Cell]] = [
        (match.start(), Cell(textwrap.dedent(match.group(1)), "exec"))
        for match in _FENCED.finditer(step_text)
    ]
    outside = _FENCED.sub(lambda match: "\n" * match.group().count("\n"), step_text)
    lines = outside.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    index = 0
    while index < len(lines):
        prompt = _PROMPT.match(lines[index])
        if not prompt:
            index += 1
            continue
        start, source = offsets[index], [prompt.group(1)]
        index += 1
        while index < len(lines) and _CONTINUATION.match(lines[index]):
            source.append(_CONTINUATION.match(lines[index]).group(1))
            index += 1
        expected = None
        if index < len(lines) and lines[index].strip() and not _PROMPT.match(lines[index]):
            expected = lines[index].strip()
            index += 1
        found.append((start, Cell("\n".join(source) + "\n", "single", expected)))
    return tuple(cell for _, cell in sorted(found, key=lambda pair: pair[0]))


# ---------------------------------------------------------------------------------------------
# The bootstrap: this function's source runs inside the sandbox, before the snippet.


def _sandbox_main() -> None:  # pragma: no cover - runs in the sandboxed interpreter
    import ast as ast_module
    import io
    import json as json_module
    import os as os_module
    import sys as sys_module

    job_path, work = sys_module.argv[1], os_module.path.realpath(sys_module.argv[2])
    with open(job_path, encoding="utf-8") as handle:
        job = json_module.load(handle)
    os_module.remove(job_path)
    marker = job["marker"]
    stdlib = os_module.path.dirname(os_module.path.realpath(os_module.__file__))
    readable = (work, stdlib, "/dev/null", "/dev/urandom", "/dev/random")
    write = os_module.write
    exit_now = os_module._exit
    realpath = os_module.path.realpath
    fspath = os_module.fsdecode

    def report(payload: dict) -> None:
        write(1, ("\n" + marker + json_module.dumps(payload) + "\n").encode("utf-8", "replace"))

    def block(what: str) -> None:
        report({"blocked": what})
        exit_now(job["blocked_exit_code"])

    def inside(path: object, roots: tuple) -> bool:
        if isinstance(path, int):
            return True
        try:
            resolved = realpath(fspath(path))
        except (TypeError, ValueError):
            return False
        return any(resolved == root or resolved.startswith(root.rstrip("/") + "/") for root in roots)

    process_events = {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "os.startfile",
        "subprocess.Popen",
        "pty.spawn",
        "resource.setrlimit",
        "resource.prlimit",
        "signal.pthread_kill",
        "sys.remote_exec",
    }
    blocked_modules = {
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "_multiprocessing",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "ctypes",
        "_ctypes",
        "pty",
        "_xxsubinterpreters",
        "_interpreters",
    }
    path_events = {
        "os.chmod",
        "os.chown",
        "os.link",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "os.chflags",
        "os.lchflags",
        "os.lchmod",
        "os.setxattr",
        "os.removexattr",
        "shutil.chown",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.rmtree",
        "shutil.make_archive",
        "shutil.unpack_archive",
    }
    write_flags = (
        os_module.O_WRONLY | os_module.O_RDWR | os_module.O_APPEND | os_module.O_CREAT | os_module.O_TRUNC
    )

    def hook(event: str, args: tuple) -> None:
        if event in process_events:
            block(event)
        elif event.startswith(("socket.", "ctypes.", "_winapi.")):
            block(event)
        elif event == "import" and args and str(args[0]).split(".")[0] in blocked_modules:
            # An ImportError, not an exit: libraries that try optional imports carry on without.
            raise ImportError(f"import of {args[0]} is blocked in the sandbox")
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(path, (work,)):
                block(f"write outside the sandbox folder ({path})")
            if not writing and not inside(path, readable):
                block(f"read outside the sandbox folder ({path})")
        elif event in path_events:
            for argument in args:
                if isinstance(argument, (str, bytes)) or hasattr(argument, "__fspath__"):
                    if not inside(argument, (work,)):
                        block(f"{event} outside the sandbox folder ({argument})")
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            if not inside(args[0], readable):
                block(f"{event} outside the sandbox folder ({args[0]})")

    sys_module.addaudithook(hook)
    namespace: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    results = []
    for cell in job["cells"]:
        entry: dict = {"output": "", "error": None, "has_assert": False}
        buffer = io.StringIO()
        try:
            tree = compile(cell["source"], "<snippet>", cell["mode"], ast_module.PyCF_ONLY_AST)
            entry["has_assert"] = any(isinstance(node, ast_module.Assert) for node in ast_module.walk(tree))
            code = compile(tree, "<snippet>", cell["mode"])
        except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
            entry["error"] = {"type": type(error).__name__, "message": str(error)[:500], "line": None}
            results.append(entry)
            break
        saved = sys_module.stdout
        sys_module.stdout = buffer
        try:
            exec(code, namespace)
        except BaseException as error:  # noqa: BLE001 - every failure is reported, not raised
            line, traceback = None, error.__traceback__
            while traceback is not None:
                if traceback.tb_frame.f_code.co_filename == "<snippet>":
                    line = traceback.tb_lineno
                traceback = traceback.tb_next
            entry["error"] = {"type": type(error).__name__, "message": str(error)[:500], "line": line}
        finally:
            sys_module.stdout = saved
        entry["output"] = buffer.getvalue()[-4000:]
        results.append(entry)
        if entry["error"]:
            break
    report({"cells": results})
    exit_now(0)


@functools.lru_cache(maxsize=1)
def _bootstrap_source() -> str:
    return textwrap.dedent(inspect.getsource(_sandbox_main)) + "\n_sandbox_main()\n"


# ---------------------------------------------------------------------------------------------
# Running the sandbox


@functools.lru_cache(maxsize=4)
def unshare_prefix(enabled: bool = True) -> tuple[str, ...]:
    """The `unshare` command line that works on this machine, or () when none does."""
    executable = shutil.which("unshare") if enabled else None
    if executable is None:
        return ()
    # No --pid: the snippet would be pid 1 of the namespace, which ignores SIGXCPU and blurs
    # exit statuses. Process creation is blocked by the audit hook and the group is killed anyway.
    for prefix in ((executable, "--net"), (executable, "--user", "--map-root-user", "--net")):
        try:
            probe = subprocess.run(
                [*prefix, "--", "true"], capture_output=True, timeout=5, env={"PATH": "/usr/bin:/bin"}
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return (*prefix, "--")
    return ()


def _user_process_count() -> int:
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                continue
    return count


def _limits(config: CodeConfig) -> Any:
    import resource

    process_limit = _user_process_count() + config.extra_processes
    megabyte = 1024 * 1024
    limits = (
        (resource.RLIMIT_CPU, config.cpu_seconds, config.cpu_seconds + 1),
        (resource.RLIMIT_AS, config.memory_mb * megabyte, config.memory_mb * megabyte),
        (resource.RLIMIT_FSIZE, config.file_size_mb * megabyte, config.file_size_mb * megabyte),
        (resource.RLIMIT_NOFILE, config.open_files, config.open_files),
        (resource.RLIMIT_NPROC, process_limit, process_limit),
        (resource.RLIMIT_CORE, 0, 0),
    )

    def apply() -> None:  # runs in the child between fork and exec: plain calls only
        for which, soft, hard in limits:
            resource.setrlimit(which, (soft, hard))

    return apply


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Whether the child exited within the timeout, leaving it a zombie (not reaped)."""
    import select
    import time

    flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
    ends = time.monotonic() + max(timeout_s, 0.0)
    try:
        descriptor = os.pidfd_open(pid)
    except (AttributeError, OSError):
        descriptor = None
    try:
        while True:
            if os.waitid(os.P_PID, pid, flags) is not None:
                return True
            remaining = ends - time.monotonic()
            if remaining <= 0:
                return False
            if descriptor is not None:
                select.select([descriptor], [], [], remaining)  # readable when the child exits
            else:
                time.sleep(min(remaining, 0.01))
    finally:
        if descriptor is not None:
            os.close(descriptor)


@dataclass(frozen=True)
class SandboxRun:
    """What came back from one sandboxed run."""

    report: dict | None  # the bootstrap's report, None when it never wrote one
    returncode: int | None
    timed_out: bool
    stderr: str


def run_sandboxed(cells: tuple[Cell, ...], config: CodeConfig, timeout_s: float) -> SandboxRun:
    marker = f"@@prmforge-sandbox-{secrets.token_hex(8)}@@"
    root = Path(tempfile.mkdtemp(prefix="prmforge-code-"))
    try:
        work = root / "work"
        work.mkdir()
        (root / "bootstrap.py").write_text(_bootstrap_source(), encoding="utf-8")
        job = {
            "marker": marker,
            "blocked_exit_code": BLOCKED_EXIT_CODE,
            "cells": [{"source": cell.source, "mode": cell.mode} for cell in cells],
        }
        (root / "job.json").write_text(json.dumps(job), encoding="utf-8")
        command = [
            *unshare_prefix(config.use_unshare),
            config.python,
            "-I",
            "-S",
            "-B",
            str(root / "bootstrap.py"),
            str(root / "job.json"),
            str(work),
        ]
        with open(root / "stdout", "wb") as stdout, open(root / "stderr", "wb") as stderr:
            process = subprocess.Popen(
                command,
                cwd=work,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                close_fds=True,
                start_new_session=True,
                preexec_fn=_limits(config),
            )
            try:
                timed_out = not _wait_unreaped(process.pid, timeout_s)
            finally:
                # The leader is not reaped yet, so its pid still names our group and no other:
                # this kills the sandbox and any straggler it left, and nothing else.
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        output = (root / "stdout").read_bytes().decode("utf-8", "replace")
        errors = (root / "stderr").read_bytes()[-2000:].decode("utf-8", "replace")
        report = None
        for line in reversed(output.splitlines()):
            if line.startswith(marker):
                try:
                    report = json.loads(line[len(marker) :])
                except json.JSONDecodeError:
                    report = None
                break
        return SandboxRun(report, process.returncode, timed_out, errors)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stop_reason(run: SandboxRun, config: CodeConfig) -> str:
    """Why the sandbox stopped a run that left no complete report."""
    if run.timed_out:
        return f"sandbox: wall-time limit ({config.wall_seconds:g} s) exceeded"
    code = run.returncode or 0
    number = -code if code < 0 else 0
    names = {
        signal.SIGXCPU: f"sandbox: CPU-time limit ({config.cpu_seconds} s) exceeded",
        signal.SIGKILL: f"sandbox: killed (CPU-time limit {config.cpu_seconds} s or memory)",
        signal.SIGXFSZ: f"sandbox: file-size limit ({config.file_size_mb} MB) exceeded",
        signal.SIGSEGV: "sandbox: crashed with SIGSEGV (likely stack overflow from deep recursion)",
    }
    if number in names:
        return names[number]
    if number:
        try:
            return f"sandbox: killed by signal {signal.Signals(number).name}"
        except ValueError:
            return f"sandbox: killed by signal {number}"
    detail = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "no report"
    return f"sandbox: exited with code {code} ({detail})"


# ---------------------------------------------------------------------------------------------
# Judging


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def same_number(printed: str, claimed: Fraction) -> bool | None:
    """Whether a printed value equals a claimed one; None when the printed text is no number.

    >>> same_number("0.30000000000000004", Fraction(3, 10)), same_number("17", Fraction(18)), same_number("x", 1)
    (True, False, None)
    """
    value = _number(printed)
    if value is None:
        return None
    if re.search(r"[.eE]", printed):
        scale = max(abs(value), abs(claimed), Fraction(1))
        return abs(value - claimed) <= FLOAT_RELATIVE_TOLERANCE * scale
    return value == claimed


def claimed_result(step_text: str) -> Fraction | None:
    """The right side of the last equality in the step's prose that has an exact value.

    >>> claimed_result("Step 1: 21 - 3 = 18, so x = 18 / 4"), claimed_result("She has x = 3 apples, x + 1 = 4")
    (Fraction(9, 2), Fraction(4, 1))
    """
    from tasks.verifiers.arith import NotEvaluable, check_claims, evaluate_exact
    from tasks.verifiers.reading import extract_claims

    claims = extract_claims(step_text).claims
    bindings: dict[Any, Any] = {}
    check_claims(claims, bindings)  # binds assignments made in the step itself
    for claim in reversed(claims):
        if claim.operator == "=":
            try:
                value = evaluate_exact(claim.rhs, bindings)
            except NotEvaluable:
                continue
            return Fraction(int(value.p), int(value.q))
    return None


def judge_run(cells: tuple[Cell, ...], report: dict, claimed: Fraction | None, name: str = "code") -> Verdict:
    """The verdict on a completed sandbox report (see the module docstring)."""
    results = report.get("cells", [])
    passed: list[str] = []
    for cell, result in zip(cells, results, strict=False):  # the run stops at the first error
        error = result.get("error")
        where = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        if error and error["type"] == "AssertionError":
            lines = cell.source.splitlines()
            line = (
                lines[error["line"] - 1].strip()
                if error.get("line") and error["line"] <= len(lines)
                else where
            )
            message = f": {error['message']}" if error["message"] else ""
            return Verdict(name, INVALID, evidence=f"assertion failed: {line}{message}")
        if error:
            limit = {"MemoryError": "memory limit", "RecursionError": "recursion limit"}.get(error["type"])
            if "File too large" in error["message"]:
                limit = "file-size limit"
            prefix = f"sandbox: {limit} reached" if limit else "snippet raised"
            return Verdict(name, UNKNOWN, reason=f"{prefix} {error['type']}: {error['message']}".strip())
        if result.get("has_assert"):
            passed.append(f"assertions passed in `{where}`")
        if cell.expected is not None:
            printed = result.get("output", "").strip()
            equal = printed == cell.expected or bool(
                _number(cell.expected) is not None and same_number(printed, _number(cell.expected))
            )
            if not equal:
                return Verdict(
                    name, INVALID, evidence=f"`>>> {where}` printed {printed!r}, expected {cell.expected!r}"
                )
            passed.append(f"`>>> {where}` printed {printed!r} as expected")
    printed_lines = [
        line for result in results for line in result.get("output", "").splitlines() if line.strip()
    ]
    if claimed is not None and printed_lines:
        agrees = same_number(printed_lines[-1], claimed)
        if agrees is False:
            return Verdict(
                name,
                INVALID,
                evidence=f"snippet printed {printed_lines[-1].strip()}, the step claims {claimed}",
            )
        if agrees:
            passed.append(f"snippet printed {printed_lines[-1].strip()}, as the step claims")
    if passed:
        return Verdict(name, VALID, evidence="; ".join(passed))
    return Verdict(
        name,
        UNKNOWN,
        reason="snippet ran but checked nothing (no assert, no expected output, no printed number to compare with a claim)",
    )


class CodeVerifier:
    """Runs a step's Python snippets in a sandbox and checks what they assert and print."""

    name = "code"

    def __init__(self, config: CodeConfig | None = None) -> None:
        self.config = config or CodeConfig()

    def verify(self, step_text: str, context: StepContext) -> Verdict:
        # The deadline leaves room for start-up and clean-up around the sandbox's own wall limit.
        budget_ms = self.config.wall_seconds * 1000 + 2000
        return run_guarded(self.name, budget_ms, lambda deadline: self._judge(step_text, deadline))

    def _judge(self, step_text: str, deadline: Deadline) -> Verdict:
        cells = find_snippets(step_text)
        if not cells:
            return Verdict(self.name, UNKNOWN, reason="no python snippet in step")
        if sum(len(cell.source) for cell in cells) > MAX_SNIPPET_CHARS:
            return Verdict(self.name, UNKNOWN, reason=f"snippets longer than {MAX_SNIPPET_CHARS} characters")
        run = run_sandboxed(cells, self.config, min(self.config.wall_seconds, deadline.remaining_ms() / 1000))
        if run.report is not None and "blocked" in run.report:
            return Verdict(self.name, UNKNOWN, reason=f"sandbox: blocked {run.report['blocked']}")
        if run.report is None or run.timed_out:
            return Verdict(
                self.name, UNKNOWN, evidence=run.stderr[-500:], reason=_stop_reason(run, self.config)
            )
        return judge_run(cells, run.report, claimed_result(step_text), self.name)
