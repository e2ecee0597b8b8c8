"""What a sandboxed run reports: :class:`SandboxResult`, built from the child's exit, output
and messages.

The parent (``parent.py``) hands over the raw facts (exit code, captured bytes, which limit it
enforced itself, the child's report pipe); this module turns them into one result with a
one-line ``error`` for a repair prompt (the exception and the program line that raised it).
"""

from __future__ import annotations

import json
import re
import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one run. ``ok``: exit code 0, no limit hit and nothing blocked."""

    ok: bool
    exit_code: int  # negative: killed by that signal
    stdout: str  # at most max_output_bytes in total with stderr, then a truncation marker
    stderr: str
    duration_s: float
    killed_by: str | None = None  # "timeout" | "memory" | "output" | "processes" | "file size"
    violation: str | None = None  # first blocked operation: "network", "subprocess", ...
    violations: tuple[str, ...] = ()  # every blocked operation (first 20): "kind: detail"
    error: str | None = None  # one line for a repair prompt: "AssertionError (line 9 in ...)"
    isolation: tuple[str, ...] = ()  # the layers that were in effect, and those that were not


def summarise(
    *,
    returncode: int,
    out: bytes,
    err: bytes,
    killed_by: str | None,
    report: bytes,
    main_file: str,
    duration_s: float,
    timeout_s: float,
    memory_mb: int,
    max_output_bytes: int,
    outer_layers: tuple[str, ...] | list[str] = (),
) -> SandboxResult:
    """The result of one run. ``killed_by``: the limit the parent enforced (timeout, output),
    else None; the others (memory, processes, the CPU backstop) are read from how it ended."""
    layers, violations = _parse_report(report)
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if killed_by == "output":
        marker = f"\n[sandbox: output truncated at {max_output_bytes} bytes, process killed]\n"
        stdout, stderr = stdout + marker, stderr + marker
    error = _error_summary(stderr, main_file) if killed_by is None and returncode != 0 else None
    killed_by = killed_by or _limit_hit(returncode, error)
    if killed_by == "timeout":
        error = f"Timeout: no result after {timeout_s:g} s (an endless loop, or too slow)"
    elif killed_by == "output":
        error = f"OutputLimit: more than {max_output_bytes} bytes of output"
    elif killed_by == "memory" and not (error or "").startswith("MemoryError"):
        error = f"MemoryError: killed above the {memory_mb} MB memory limit"
    elif error is None and violations:
        error = f"PermissionError: sandbox blocked {violations[0]}"
    elif error is None and returncode != 0:
        error = f"exit code {returncode}"
    ok = returncode == 0 and killed_by is None and not violations
    return SandboxResult(
        ok=ok,
        exit_code=returncode,
        stdout=stdout,
        stderr=stderr,
        duration_s=duration_s,
        killed_by=killed_by,
        violation=violations[0].split(":", 1)[0] if violations else None,
        violations=tuple(violations),
        error=None if ok else error,
        isolation=(*outer_layers, *layers, "process group kill"),
    )


def _parse_report(report: bytes) -> tuple[list[str], list[str]]:
    layers, violations = [], []
    for line in report.decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "layers" in item:
            layers = [str(x) for x in item["layers"]]
        elif isinstance(item, dict) and "violation" in item:
            violations.append(f"{item['violation']}: {item.get('detail', '')}")
    return layers, violations


_FRAME = re.compile(r'\s*File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.+))?')


def _error_summary(stderr: str, main_file: str) -> str | None:
    """The exception line of the last traceback, with the line of the program that raised it."""
    lines = [line for line in stderr.rstrip().splitlines() if line.strip()]
    exc = next((i for i in range(len(lines) - 1, -1, -1) if not lines[i][0].isspace()), None)
    if exc is None:
        return None
    frames = [(i, m) for i, line in enumerate(lines[:exc]) if (m := _FRAME.match(line))]
    ours = [(i, m) for i, m in frames if m["file"] == main_file]
    if not frames:
        return lines[exc].strip()
    i, frame = (ours or frames)[-1]
    source = lines[i + 1].strip() if i + 1 < exc and not _FRAME.match(lines[i + 1]) else ""
    if set(source) <= set("^~ "):
        source = ""
    summary = lines[exc].strip()
    where = f"line {frame['line']}" + (f" in {frame['func']}" if frame["func"] else "")
    return f"{summary} ({where}: {source})" if source else f"{summary} ({where})"


def _limit_hit(returncode: int, error: str | None) -> str | None:
    """Which limit ended the run when the parent did not kill it."""
    if returncode == -signal.SIGXCPU:
        return "timeout"  # the CPU-seconds backstop
    if returncode == -signal.SIGKILL or (error or "").startswith("MemoryError"):
        return "memory"  # a SIGKILL the parent did not send comes from the OOM killer
    if "[Errno 11] Resource temporarily unavailable" in (error or ""):
        # fork/clone failed with EAGAIN: the process limit. Not anchored to the start: the
        # children of a fork bomb write their tracebacks at once, so the exception line
        # can lose its "BlockingIOError" to another child's output.
        return "processes"
    if (error or "").startswith("OSError: [Errno 27]") or returncode == -signal.SIGXFSZ:
        return "file size"  # a write past RLIMIT_FSIZE (Python ignores SIGXFSZ: EFBIG)
    return None
