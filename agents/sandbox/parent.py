"""The parent side of a sandboxed run: the temp dir, the child process, its limits and its end.

:func:`run_sandboxed` prepares a fresh temporary directory (the child's cwd, HOME and TMPDIR)
holding the code and a copy of the bootstrap (``bootstrap.py``, found next to this file), starts
``python -I -B -u`` on it in its own session with a minimal environment (inside bubblewrap where
it works: ``bubblewrap.py``), reads its output as it comes, enforces the wall-clock timeout and
the output cap by killing the whole process group, and waits until every process of the group
has ended before the directory is removed. ``report.py`` turns what happened into a
:class:`SandboxResult`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from slm_agents.sandbox import bubblewrap
from slm_agents.sandbox.bootstrap import tasks_of
from slm_agents.sandbox.report import SandboxResult, summarise

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")  # stdlib only: it runs inside the child


def run_sandboxed(
    code: str,
    *,
    timeout_s: float = 10,
    memory_mb: int = 512,
    max_output_bytes: int = 64_000,
    max_processes: int = 32,
    max_file_mb: int = 64,
    allow_network: bool = False,
    allow_subprocess: bool = False,
    user: str | None = "nobody",
    python: str | None = None,
    boundary: str = "auto",
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a sandboxed subprocess and report what happened.

    ``max_processes`` counts threads too. ``user``: whom to run as when started as root (None:
    stay root, without a process limit). ``python``: the interpreter (default: this one).
    ``allow_subprocess`` is refused where the process limit cannot be enforced. ``boundary``:
    "auto" runs inside bubblewrap when it works here and falls back to the inner layers (saying
    so in ``isolation``), "bubblewrap" raises :class:`SandboxUnavailable` instead of falling
    back, "none" skips it.
    """
    import shutil
    import subprocess
    import tempfile

    for name, value in [
        ("timeout_s", timeout_s),
        ("memory_mb", memory_mb),
        ("max_output_bytes", max_output_bytes),
        ("max_processes", max_processes),
        ("max_file_mb", max_file_mb),
    ]:
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
    python = (shutil.which(python) or python) if python else sys.executable
    bwrap, no_bwrap = bubblewrap.choose(boundary, python)

    with tempfile.TemporaryDirectory(prefix="slm-sandbox-") as workdir:
        boot = os.path.join(workdir, "_sandbox_boot.py")
        shutil.copyfile(BOOTSTRAP, boot)  # in the sandbox dir: readable by whom the child runs as
        main_file = os.path.join(workdir, "main.py")
        with open(main_file, "w", encoding="utf-8") as f:
            f.write(code)
        drop_to = _chown_for(user, workdir) if os.geteuid() == 0 and user else None
        outer = [f"no bubblewrap ({no_bwrap})"]
        if bwrap:
            outer = bubblewrap.layers(allow_network=allow_network)
            outer_argv = bubblewrap.command(
                bwrap,
                python,
                workdir=workdir,
                allow_network=allow_network,
                drop_privileges=drop_to is not None,
            )
        report_r, report_w = os.pipe()
        config = {
            "workdir": workdir,
            "report_fd": report_w,
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "max_processes": max_processes,
            "max_file_mb": max_file_mb,
            "allow_network": allow_network,
            "allow_subprocess": allow_subprocess,
            "drop_to": drop_to,
            "network_isolated": bool(bwrap) and not allow_network,
            # what the process limit counts that the pid namespace hides (none in a user one)
            "tasks_of_user": tasks_of(drop_to[0]) if bwrap and drop_to else None,
        }
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        argv = [python, "-I", "-B", "-u", "-X", "utf8", boot, json.dumps(config)]
        if bwrap:
            argv = [*outer_argv, *argv]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(report_w,),
                start_new_session=True,
            )
        finally:
            os.close(report_w)
        with proc:  # closes the pipes and reaps the process
            try:
                out, err, killed_by = _collect(proc, start + timeout_s, max_output_bytes)
            finally:
                _kill_group(proc.pid)
        _wait_until_group_ended(proc.pid)  # before the temp dir goes: nothing may still write
        duration = time.monotonic() - start
        report = _read_all(report_r)

    returncode = proc.returncode
    if bwrap and 128 < returncode <= 128 + 64:  # bwrap exits 128 + N for a child killed by N
        returncode = 128 - returncode
    return summarise(
        returncode=returncode,
        out=out,
        err=err,
        killed_by=killed_by,
        report=report,
        main_file=main_file,
        duration_s=duration,
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        max_output_bytes=max_output_bytes,
        outer_layers=outer,
    )


def run_tests(
    solution_code: str, test_code: str, entry_point: str | None = None, **limits
) -> SandboxResult:
    """Run a solution with its tests; HumanEval format: ``test_code`` defines ``check(candidate)``.

    With ``entry_point`` the program ends with ``check(entry_point)``; without, the test code
    runs as it is (module-level asserts). ``limits`` go to :func:`run_sandboxed`.
    """
    if entry_point is not None and not entry_point.isidentifier():
        raise ValueError(f"entry_point must be a Python identifier, got {entry_point!r}")
    program = f"{solution_code}\n\n{test_code}\n"
    if entry_point is not None:
        program += f"\n\ncheck({entry_point})\n"
    return run_sandboxed(program, **limits)


def _chown_for(user: str, workdir: str) -> list[int]:
    """Hand the sandbox dir to ``user`` (root only); the child decides whether it can drop."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise ValueError(f"user must exist on this machine, got {user!r}") from exc
    for path in [workdir, *(os.path.join(workdir, n) for n in os.listdir(workdir))]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return [entry.pw_uid, entry.pw_gid]


def _collect(proc, deadline: float, max_bytes: int) -> tuple[bytes, bytes, str | None]:
    """Read stdout and stderr as they come until both close, the deadline, or the output cap."""
    import selectors
    import subprocess

    out, err = bytearray(), bytearray()
    buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    leader_done = False
    with selectors.DefaultSelector() as selector:
        for stream in (proc.stdout, proc.stderr):
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(out), bytes(err), "timeout"
            for key, _ in selector.select(timeout=min(remaining, 0.2)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                room = max_bytes - len(out) - len(err)
                buffers[key.fd] += chunk[:room]
                if len(chunk) > room:
                    return bytes(out), bytes(err), "output"
            # Once the main process has exited, whatever it left behind (holding the pipes
            # open) is killed. WNOWAIT keeps it a zombie, so its group id cannot be reused yet.
            exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if exited and not leader_done:
                leader_done = True
                _kill_group(proc.pid)
    try:  # both pipes are closed; the process may still run
        proc.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        return bytes(out), bytes(err), "timeout"
    return bytes(out), bytes(err), None


def _kill_group(pgid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _wait_until_group_ended(pgid: int, within_s: float = 2.0) -> None:
    """Wait until no process of the run is alive (at most ``within_s``).

    Why: SIGKILL is delivered asynchronously, so a process left behind by the code can still
    run for a moment after ``_kill_group``; the run is over only when none does.
    """
    deadline = time.monotonic() + within_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.005)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies awaiting their reaper count as
    ended: they run no code)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone is there; /proc tells whether it still runs
    if not os.path.isdir("/proc"):
        return True
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                state, _ppid, group = f.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # ended while we looked
        if int(group) == pgid and state != "Z":
            return True
    return False


def _read_all(fd: int) -> bytes:
    """What the child reported; never blocks (a process that escaped may hold the pipe)."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return data
