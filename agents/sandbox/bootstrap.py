"""The sandboxed child's bootstrap: limits, namespace, privileges, audit hook, then the code.

The parent (``parent.py``) copies this file into the run's temporary directory and starts it as
``python -I -B -u bootstrap.py CONFIG_JSON`` (inside bubblewrap where it can); it sets the
limits, enters an empty network namespace (unless bubblewrap made one), drops to an unprivileged
user where it can, installs the audit hook and runs ``main.py`` as ``__main__``. It runs inside
the sandbox, before and beside the untrusted code, so it imports only the standard library
(never anything of ours: the sandbox cannot see our package, and the child must not depend on
it). It reports to the parent over a pipe, one JSON object a line: ``{"layers": [...]}`` once,
then ``{"violation": kind, "detail": ...}`` per blocked operation (``report.py`` reads them).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

_REPORT_LIMIT = 20  # violations reported per run; a loop of blocked calls must not fill the pipe
_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def bootstrap(config: dict) -> None:
    import resource

    workdir = config["workdir"]
    drop_to = config["drop_to"]
    os.environ.pop("PWD", None)  # bwrap's --chdir sets it; the code gets only what we set
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
    # In bwrap's pid namespace /proc shows only the sandbox; the parent counted on the host.
    running = config.get("tasks_of_user")
    process_cap = (running if running is not None else tasks_of(run_as)) + config["max_processes"]
    limit(resource.RLIMIT_NPROC, process_cap)

    if not config["allow_network"] and not config.get("network_isolated"):
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


def tasks_of(uid: int) -> int:
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
_GUARDED |= {"os.kill", "os.killpg", "import"}  # import: only once a module left sys.modules


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
        if event == "import":
            if args[0] == "_posixsubprocess" and not allow_subprocess:
                deny("subprocess", "re-import of _posixsubprocess (an unwrapped fork_exec)")
        elif event in _PROCESS_EVENTS and not allow_subprocess:
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
    bootstrap(json.loads(sys.argv[1]))
