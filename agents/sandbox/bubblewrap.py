"""The sandbox's outer layer: a bubblewrap (``bwrap``) command line, and whether it works here.

Why a second process boundary: the audit hook in ``bootstrap.py`` sees only what Python tells
it, and code that re-imports a C module or calls one directly gets past it. bubblewrap puts the
child in its own mount, pid, network, IPC and UTS namespaces, where the kernel itself decides:

- the filesystem is a fresh empty root holding only ``/usr`` (and its ``/bin``, ``/lib``
  links), the interpreter's own directories (its prefix; for a venv only ``pyvenv.cfg``, the
  executable and the site-packages on the interpreter's path), a fresh ``/proc``, a minimal
  ``/dev`` and a small ``/dev/shm``, all read-only but ``/dev/shm`` and the sandbox directory:
  no home, no project, no host ``/tmp``, no ``/etc``;
- a private pid namespace: the code sees only its own processes, and when the run's first
  process (bwrap's reaper) dies the kernel kills every process left in it, daemons included;
- no network but the namespace's own loopback (unless ``allow_network``);
- an unprivileged uid. Started as root, bwrap keeps only ``CAP_SETUID``, ``CAP_SETGID`` and
  ``CAP_DAC_READ_SEARCH`` (to enter the sandbox dir), so that the bootstrap can drop to
  ``nobody``: inside, the interpreter's directories are reachable by anyone, whatever their
  modes on the host. No user namespace for root: its uid would still be root outside, and the
  kernel exempts root from the process limit. Started by another user, bwrap maps that user
  to uid 65534 in a new user namespace and forbids nested ones.

:func:`probe` checks once per interpreter that bwrap starts it with these mounts, so a machine
without bwrap or without permission for namespaces falls back to the inner layers and says why.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess

NOBODY = 65534
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_PROBE = "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.path]))"


class SandboxUnavailable(RuntimeError):
    """The caller asked for the bubblewrap boundary and this machine cannot give it."""


def find() -> str | None:
    """The ``bwrap`` executable on PATH, if any."""
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=16)
def probe(bwrap: str, python: str) -> str | None:
    """Why bwrap cannot run ``python`` here (None: it can). Cached per (bwrap, interpreter)."""
    try:
        args = command(bwrap, python, workdir=None, allow_network=False, drop_privileges=False)
        done = subprocess.run(
            [*args, python, "-I", "-B", "-c", "import encodings, json, os"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return f"failed to start: {exc}"
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[0]
        return f"failed to start: {first}"
    return None


def command(
    bwrap: str,
    python: str,
    *,
    workdir: str | None,
    allow_network: bool,
    drop_privileges: bool,
    shm_mb: int = 16,
) -> list[str]:
    """The bwrap argv (up to the command) that runs ``python`` with ``workdir`` writable and a
    ``shm_mb`` MB ``/dev/shm``."""
    mounts = _Mounts()
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            mounts.add("--symlink", os.readlink(path), path)
        elif os.path.isdir(path):
            mounts.add("--ro-bind", path, path)
    for kind, source, dest in _interpreter_mounts(python):
        mounts.add(kind, source, dest)
    mounts.add("--proc", None, "/proc")
    mounts.add("--dev", None, "/dev")
    if workdir is not None:
        mounts.add("--bind", workdir, workdir)
    args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--hostname", "sandbox"]
    if not allow_network:
        args.append("--unshare-net")
    if os.geteuid() == 0:  # no user namespace: its root would be root outside (see above)
        args += ["--cap-drop", "ALL"]
        if drop_privileges:  # to drop to the owner of the sandbox dir: reach it, then setuid
            for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_DAC_READ_SEARCH"):
                args += ["--cap-add", cap]
    else:
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY)]
        if _version(bwrap) >= (0, 8):
            args.append("--disable-userns")
    args += [*mounts.args, "--remount-ro", "/", "--remount-ro", "/dev"]
    if _version(bwrap) >= (0, 7):  # --size: POSIX semaphores (multiprocessing) need /dev/shm
        args += ["--perms", "1777", "--size", str(shm_mb * 1024 * 1024), "--tmpfs", "/dev/shm"]
    if workdir is not None:
        args += ["--chdir", workdir]
    return [*args, "--"]


def layers(*, allow_network: bool) -> list[str]:
    """What :func:`command` puts in force, in ``SandboxResult.isolation``'s words."""
    found = ["bubblewrap", "pid namespace"]
    if not allow_network:
        found.append("network namespace")
    if os.geteuid() != 0:
        found.append(f"user namespace (uid {NOBODY} inside)")
    return found


class _Mounts:
    """Mount arguments in order, with every missing parent directory made first (mode 0755:
    bwrap would copy the host's mode, and ``/root`` is 0700)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.made = {"/"}
        self.trees: list[str] = []  # destinations that bring their own contents

    def add(self, kind: str, source: str | None, dest: str) -> None:
        dest = os.path.normpath(dest)
        inside = any(dest == tree or dest.startswith(tree + "/") for tree in self.trees)
        if inside and kind in ("--ro-bind", "--symlink"):
            return  # already visible, read-only, through a mounted tree
        parent = os.path.dirname(dest)
        missing = []
        while parent not in self.made:
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            self.args += ["--perms", "0755", "--dir", directory]
            self.made.add(directory)
        self.args += [kind, dest] if source is None else [kind, source, dest]
        self.made.add(dest)
        if kind != "--symlink":
            self.trees.append(dest)


def _interpreter_mounts(python: str) -> list[tuple[str, str | None, str]]:
    """What the interpreter needs: its prefix, a venv's ``pyvenv.cfg`` and site-packages, and
    the executable (with its chain of symlinks). Other entries of its path (a ``.pth`` pointing
    into a project, say) stay out."""
    prefix, base_prefix, path = _interpreter(python)
    mounts: list[tuple[str, str | None, str]] = [("--ro-bind", base_prefix, base_prefix)]
    if prefix != base_prefix:
        config = os.path.join(prefix, "pyvenv.cfg")
        mounts.append(("--ro-bind", config, config))
        for entry in path:
            if entry.startswith(prefix + os.sep) and os.path.isdir(entry):
                mounts.append(("--ro-bind", entry, entry))
    link = os.path.abspath(python)
    for _ in range(40):  # a symlink chain; 40 is the kernel's own limit
        if not os.path.islink(link):
            mounts.append(("--ro-bind", link, link))  # skipped when inside a mounted tree
            break
        target = os.readlink(link)
        mounts.append(("--symlink", target, link))
        link = os.path.normpath(os.path.join(os.path.dirname(link), target))
    return mounts


@functools.lru_cache(maxsize=16)
def _interpreter(python: str) -> tuple[str, str, list[str]]:
    """``sys.prefix``, ``sys.base_prefix`` and ``sys.path`` of ``python -I``, asked once."""
    out = subprocess.run(
        [python, "-I", "-B", "-c", _PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    ).stdout
    prefix, base_prefix, path = json.loads(out)  # as the interpreter sees them: no realpath
    return prefix, base_prefix, path


@functools.lru_cache(maxsize=4)
def _version(bwrap: str) -> tuple[int, ...]:
    out = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"(\d+)\.(\d+)", out)
    return tuple(int(x) for x in found.groups()) if found else (0, 0)


BOUNDARIES = ("auto", "bubblewrap", "none")


def choose(boundary: str, python: str) -> tuple[str | None, str]:
    """The bwrap to run ``python`` in (None: none) and, without one, why not.

    ``boundary``: "auto" (bwrap when it works here), "bubblewrap" (bwrap or
    :class:`SandboxUnavailable`), "none" (the inner layers only).
    """
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if boundary == "none":
        return None, "not requested: boundary='none'"
    bwrap = find()
    why = "bwrap not found on PATH" if bwrap is None else probe(bwrap, python)
    if why is None:
        return bwrap, ""
    if boundary == "bubblewrap":
        raise SandboxUnavailable(
            f"boundary='bubblewrap' but {why}; install bubblewrap (Debian/Ubuntu: "
            "apt-get install bubblewrap, or `make setup` as root) and allow namespaces"
        )
    return None, why
