"""Run model-generated Python in a subprocess that contains the usual accidents.

``run_sandboxed(code)`` runs ``code`` with ``python -I -B`` in a fresh temporary directory (its
cwd, HOME and TMPDIR; removed afterwards) with a minimal environment, and returns a
:class:`SandboxResult`. ``run_tests(solution, tests, entry_point)`` does the same for a
HumanEval-style problem (``check(entry_point)`` must raise nothing).

What contains the code, from the outside in:

- **Process group kill.** The child starts its own session; on timeout, on too much output and
  when it exits, the whole group gets SIGKILL, so nothing it started outlives the run.
- **rlimits** (set by the child before the user code runs): address space (``memory_mb``), CPU
  seconds (a backstop for the wall-clock timeout), file size, no core files, and the number of
  processes of the user (``max_processes`` above what that user already runs). The kernel does
  not apply the process limit to root, so as root the child drops to ``nobody``, when ``nobody``
  can read the interpreter's files; otherwise the process limit is reported as missing.
- **Network namespace.** Without ``allow_network`` the child moves into an empty network
  namespace where the OS allows it (as root, or through an unprivileged user namespace).
- **Audit hook** (:pep:`578`), installed before the user code: creating internet sockets,
  connecting, binding and name lookups; writing, creating, renaming or removing files outside the
  sandbox directory; starting processes (``fork``, ``exec``, ``subprocess``, ``os.system``,
  ``posix_spawn``, ``multiprocessing``); signalling processes outside the sandbox; loading
  libraries or calling foreign functions with ``ctypes``. A blocked operation raises
  ``PermissionError("sandbox blocked <kind>: ...")`` and is reported to the parent through a
  pipe, so ``SandboxResult.violation`` is set even when the code catches the error.

Honest limits: an audit hook is **not a security boundary**. It stops the accidents and the
mistakes that a small model's code makes (an infinite loop, a fork in a loop, a stray
``rm``-like call, an attempted download), not a determined attacker: C extensions, a re-imported
``_posixsubprocess`` or a crafted bytecode object can get past it, and files outside the
sandbox stay readable. Disk use is bounded per file, not in total. For hostile code use a
container or gVisor on top of this.

This file has only standard-library imports: the child runs a copy of it as its bootstrap
(``_bootstrap`` at the bottom), so ``nobody`` can read it from the sandbox directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass

_REPORT_LIMIT = 20  # violations reported per run; a loop of blocked calls must not fill the pipe
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one run. ``ok``: exit code 0, no limit hit and nothing blocked."""

    ok: bool
    exit_code: int  # negative: killed by that signal
    stdout: str  # at most max_output_bytes in total with stderr, then a truncation marker
    stderr: str
    duration_s: float
    killed_by: str | None = None  # "timeout" | "memory" | "output" | "processes" | None
    violation: str | None = None  # first blocked operation: "network", "subprocess", ...
    violations: tuple[str, ...] = ()  # every blocked operation (first 20): "kind: detail"
    error: str | None = None  # one line for a repair prompt: "AssertionError (line 9 in ...)"
    isolation: tuple[str, ...] = ()  # the layers that were in effect, and those that were not


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
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a sandboxed subprocess and report what happened.

    ``max_processes`` counts threads too. ``user``: whom to run as when started as root (None:
    stay root, without a process limit). ``python``: the interpreter (default: this one).
    ``allow_subprocess`` is refused where the process limit cannot be enforced.
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

    with tempfile.TemporaryDirectory(prefix="slm-sandbox-") as workdir:
        boot = os.path.join(workdir, "_sandbox_boot.py")
        shutil.copyfile(__file__, boot)
        main_file = os.path.join(workdir, "main.py")
        with open(main_file, "w", encoding="utf-8") as f:
            f.write(code)
        drop_to = _chown_for(user, workdir) if os.geteuid() == 0 and user else None
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
        }
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
        }
        argv = [python or sys.executable, "-I", "-B", "-u", "-X", "utf8", boot, json.dumps(config)]
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

    layers, violations = _parse_report(report)
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if killed_by == "output":
        marker = f"\n[sandbox: output truncated at {max_output_bytes} bytes, process killed]\n"
        stdout, stderr = stdout + marker, stderr + marker
    if killed_by is None and proc.returncode != 0:
        error = _error_summary(stderr, main_file)
    else:
        error = None
    killed_by = killed_by or _limit_hit(proc.returncode, error)
    if killed_by == "timeout":
        error = f"Timeout: no result after {timeout_s:g} s (an endless loop, or too slow)"
    elif killed_by == "output":
        error = f"OutputLimit: more than {max_output_bytes} bytes of output"
    elif killed_by == "memory" and not (error or "").startswith("MemoryError"):
        error = f"MemoryError: killed above the {memory_mb} MB memory limit"
    elif error is None and violations:
        error = f"PermissionError: sandbox blocked {violations[0]}"
    elif error is None and proc.returncode != 0:
        error = f"exit code {proc.returncode}"
    ok = proc.returncode == 0 and killed_by is None and not violations
    return SandboxResult(
        ok=ok,
        exit_code=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        duration_s=duration,
        killed_by=killed_by,
        violation=violations[0].split(":", 1)[0] if violations else None,
        violations=tuple(violations),
        error=None if ok else error,
        isolation=(*layers, "process group kill"),
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


# --- parent side ---------------------------------------------------------------------------


def _chown_for(user: str, workdir: str) -> list[int]:
    """Hand the sandbox dir to ``user`` (root only); the child decides whether it can drop."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"user must exist on this machine, got {user!r}") from None
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
    import signal

    if returncode == -signal.SIGXCPU:
        return "timeout"  # the CPU-seconds backstop
    if returncode == -signal.SIGKILL or (error or "").startswith("MemoryError"):
        return "memory"  # a SIGKILL the parent did not send comes from the OOM killer
    if (error or "").startswith("BlockingIOError") and "temporarily unavailable" in error:
        return "processes"  # fork/clone failed with EAGAIN: the process limit
    return None


# --- child side: runs inside the sandbox before the user code --------------------------------


def _bootstrap(config: dict) -> None:
    import resource

    workdir = config["workdir"]
    drop_to = config["drop_to"]
    layers = []

    def limit(kind: int, soft: int, hard: int | None = None) -> None:
        resource.setrlimit(kind, (soft, soft if hard is None else hard))

    mb = 1024 * 1024
    cpu_s = int(config["timeout_s"]) + 1
    limit(resource.RLIMIT_AS, config["memory_mb"] * mb)
    limit(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)
    limit(resource.RLIMIT_FSIZE, config["max_file_mb"] * mb)
    limit(resource.RLIMIT_CORE, 0)
    layers.append(f"rlimits: {config['memory_mb']} MB memory, {cpu_s} s CPU, files")

    unreadable = _unreadable_by_others([*sys.path, os.path.dirname(workdir)]) if drop_to else None
    run_as = os.geteuid() if drop_to is None or unreadable else drop_to[0]
    process_cap = _tasks_of(run_as) + config["max_processes"]
    limit(resource.RLIMIT_NPROC, process_cap)

    if not config["allow_network"]:
        root = os.geteuid() == 0
        if _unshare(_CLONE_NEWNET if root else _CLONE_NEWUSER | _CLONE_NEWNET):
            layers.append("network namespace")
        else:
            layers.append("no network namespace (not permitted here)")

    if run_as != 0:
        if drop_to and not unreadable:
            os.setgroups([])
            os.setgid(drop_to[1])
            os.setuid(drop_to[0])
            layers.append(f"unprivileged user (uid {drop_to[0]})")
        layers.append(f"process limit ({config['max_processes']} more)")
    else:
        why = f"uid {drop_to[0]} cannot read {unreadable}" if unreadable else "user=None"
        layers.append(f"no process limit (root; the kernel exempts it; {why})")

    report_fd = config["report_fd"]
    os.set_inheritable(report_fd, False)
    os.set_blocking(report_fd, False)
    if config["allow_subprocess"] and run_as == 0:
        _send(report_fd, {"layers": layers})
        sys.exit("sandbox: allow_subprocess needs an enforced process limit")
    _audit_fork_exec()
    _install_guard(workdir, config["allow_network"], config["allow_subprocess"], report_fd)
    layers.append("audit hook")
    _send(report_fd, {"layers": layers})
    _run_main(os.path.join(workdir, "main.py"))


def _unreadable_by_others(paths: list[str]) -> str | None:
    """The first path that a user without privileges cannot reach (None: all reachable)."""
    import stat

    for path in paths:
        if not path or not os.path.exists(path):
            continue
        parts = os.path.realpath(path).split(os.sep)
        for depth in range(2, len(parts) + 1):
            prefix = os.sep.join(parts[:depth])
            mode = os.stat(prefix).st_mode
            needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
            if not mode & needed:
                return prefix
    return None


def _tasks_of(uid: int) -> int:
    """Processes and threads that ``uid`` runs now: RLIMIT_NPROC counts all of them."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                pass  # the process ended meanwhile
    return count


def _unshare(flags: int) -> bool:
    try:
        if hasattr(os, "unshare"):  # Python 3.12+
            os.unshare(flags)
            return True
        import ctypes

        return ctypes.CDLL(None, use_errno=True).unshare(flags) == 0
    except OSError:
        return False


def _audit_fork_exec() -> None:
    """``_posixsubprocess.fork_exec`` raises no audit event (multiprocessing calls it directly)."""
    import _posixsubprocess

    original = _posixsubprocess.fork_exec

    def fork_exec(*args):
        sys.audit("_posixsubprocess.fork_exec", args[0])
        return original(*args)

    _posixsubprocess.fork_exec = fork_exec


_PROCESS_EVENTS = {
    "os.exec", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system",
    "pty.spawn", "subprocess.Popen", "_posixsubprocess.fork_exec",
}  # fmt: skip
_NETWORK_EVENTS = {
    "socket.__new__", "socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg",
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo",
}  # fmt: skip
_CTYPES_EVENTS = {"ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function"}
# event: ((index of a path argument, index of its dir_fd argument or None), ...)
_WRITE_EVENTS = {
    "open": ((0, None),),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.link": ((1, 3),),
    "os.mkdir": ((0, 2),),
    "os.remove": ((0, 1),),
    "os.removexattr": ((0, None),),
    "os.rename": ((0, 2), (1, 3)),
    "os.rmdir": ((0, 1),),
    "os.setxattr": ((0, None),),
    "os.symlink": ((1, 2),),
    "os.truncate": ((0, None),),
    "os.utime": ((0, 3),),
    "shutil.rmtree": ((0, 1),),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DEVICES = {"/dev/null", "/dev/stdout", "/dev/stderr"}
_GUARDED = _PROCESS_EVENTS | _NETWORK_EVENTS | _CTYPES_EVENTS | set(_WRITE_EVENTS)
_GUARDED |= {"os.kill", "os.killpg"}


def _install_guard(workdir: str, allow_network: bool, allow_subprocess: bool, fd: int) -> None:
    import socket

    root = os.path.realpath(workdir)
    sent = [0]

    def deny(kind: str, detail: str) -> None:
        if sent[0] < _REPORT_LIMIT:
            sent[0] += 1
            _send(fd, {"violation": kind, "detail": detail})
        raise PermissionError(f"sandbox blocked {kind}: {detail}")

    def outside(path, dir_fd) -> str | None:
        if isinstance(path, int):
            return None  # an already open descriptor: checked when it was opened
        path = os.fsdecode(path)
        if path in _DEVICES:
            return None
        if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(path):  # -1: none
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        real = os.path.realpath(path)
        return None if real == root or real.startswith(root + os.sep) else real

    def hook(event: str, args: tuple) -> None:
        if event not in _GUARDED:
            return
        if event in _PROCESS_EVENTS and not allow_subprocess:
            deny("subprocess", f"{event} {args[0] if args else ''}".strip())
        elif event in _NETWORK_EVENTS and not allow_network:
            if event != "socket.__new__" or args[1] != socket.AF_UNIX:  # socketpair is local
                deny("network", f"{event} {args[1:] if event == 'socket.__new__' else args}")
        elif event in _CTYPES_EVENTS and not (event == "ctypes.dlopen" and args[0] is None):
            deny("ctypes", f"{event} {args[0]!r}")
        elif event in ("os.kill", "os.killpg") and not _own_group(event, args[0]):
            deny("signal", f"{event}{args} outside the sandbox")
        elif event == "open" and not (isinstance(args[2], int) and args[2] & _WRITE_FLAGS):
            return  # opened for reading
        elif event in _WRITE_EVENTS:
            for path_i, dir_fd_i in _WRITE_EVENTS[event]:
                dir_fd = args[dir_fd_i] if dir_fd_i is not None and dir_fd_i < len(args) else None
                real = outside(args[path_i], dir_fd)
                if real:
                    deny("write outside sandbox", f"{event} {real}")

    sys.addaudithook(hook)


def _own_group(event: str, target: int) -> bool:
    """Whether a signal goes to the sandbox's own process group (0 means the caller's group)."""
    group = os.getpgrp()
    if event == "os.killpg" or target < 0:
        return abs(target) in (0, group)
    try:
        return target == 0 or os.getpgid(target) == group
    except OSError:
        return False


def _send(fd: int, message: dict) -> None:
    with contextlib.suppress(OSError):  # the pipe is full or closed: best effort
        os.write(fd, (json.dumps(message, default=repr) + "\n").encode())


def _run_main(path: str) -> None:
    """Run the user code as ``__main__``; tracebacks leave out the bootstrap's frames."""
    import types

    boot_file = os.path.realpath(__file__)

    def excepthook(kind, value, tb):
        frames = []
        while tb is not None:
            if os.path.realpath(tb.tb_frame.f_code.co_filename) != boot_file:
                frames.append(tb)
            tb = tb.tb_next
        for i, frame in enumerate(frames):
            frame.tb_next = frames[i + 1] if i + 1 < len(frames) else None
        tb = frames[0] if frames else None
        sys.__excepthook__(kind, value.with_traceback(tb), tb)

    sys.excepthook = excepthook
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    sys.argv = [path]
    sys.path.insert(0, os.path.dirname(path))
    with open(path, encoding="utf-8") as f:
        source = f.read()
    exec(compile(source, path, "exec"), module.__dict__)


if __name__ == "__main__":
    _bootstrap(json.loads(sys.argv[1]))
