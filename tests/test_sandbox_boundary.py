"""The sandbox tried as a hostile program would: each attack is contained and reported.

Most attacks run twice: as plain code, where the audit hook blocks and reports them, and
"escaped": the program takes the real ``_posixsubprocess.fork_exec`` out of the hook's own
wrapper and starts a fresh interpreter without the hook, which then attacks. What stops the
escaped attack is bubblewrap (the filesystem view, the pid and network namespaces, the
unprivileged uid) and the rlimits, which survive exec; ``isolation`` names them. No models; a
few seconds in all.

The fork bombs run only where the process limit is reported in force (checked first), with a
timeout; the kernel's RLIMIT_NPROC is what stops them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from slm_agents.sandbox import SandboxUnavailable, bubblewrap, run_sandboxed

REPO = Path(__file__).resolve().parents[1]
WHY_NOT = bubblewrap.choose("auto", sys.executable)[1]
needs_bwrap = pytest.mark.skipif(bool(WHY_NOT), reason=f"bubblewrap cannot run here: {WHY_NOT}")

# How a hostile program calls fork_exec itself (the positional arguments of CPython 3.11, the
# version this project pins):
# run ARGV, wait for it, keep its exit status.
FORK_EXEC = """
errpipe_read, errpipe_write = os.pipe()
pid = fork_exec(
    ARGV, [ARGV[0]], True, (), None, None, -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write,
    True, False, -1, None, None, None, -1, None, False,
)
os.close(errpipe_write)
status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
"""
# Its way past the audit hook: the hook's wrapper keeps the original fork_exec in its closure.
# It starts `python -I -c CODE` (no bootstrap, so no hook) and exits with its status.
ESCAPE = f"""
import _posixsubprocess, os, sys
fork_exec = _posixsubprocess.fork_exec.__closure__[0].cell_contents
ARGV = [os.fsencode(sys.executable), b"-I", b"-c", CODE.encode()]
{FORK_EXEC}
sys.exit(status)
"""


def escaped(code: str) -> str:
    """A program that runs ``code`` in a fresh interpreter past the audit hook."""
    return f"CODE = {code!r}\n{ESCAPE}"


def _host_processes_running(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry.name))
            except OSError:
                pass
    return found


@needs_bwrap
def test_the_escape_gets_past_the_audit_hook_and_bubblewrap_is_what_holds():
    """The premise of the escaped tests: the fresh interpreter has no hook but the same walls."""
    code = "import os, sys; print(os.getuid(), len(sys.modules) > 0); os.fork() or os._exit(0)"
    result = run_sandboxed(escaped(code))
    assert result.ok and result.violation is None, result.stderr
    assert result.stdout.split() == ["65534", "True"]  # an unprivileged uid, and a fork allowed
    assert {"bubblewrap", "pid namespace", "network namespace"} <= set(result.isolation)
    assert "unprivileged user (uid 65534)" in result.isolation or any(
        layer.startswith("user namespace") for layer in result.isolation
    )


@needs_bwrap
@pytest.mark.parametrize("mode", ["plain", "escaped"])
def test_reading_a_file_outside_the_sandbox(tmp_path, mode):
    secret = tmp_path / "id_ed25519"
    secret.write_text("PRIVATE KEY")
    secret.chmod(0o644)  # readable by anyone on the host: only the mount namespace hides it
    code = f"for path in ({str(secret)!r}, {str(REPO / 'pyproject.toml')!r}):\n"
    code += "    try:\n        print(open(path).read())\n"
    code += "    except OSError as error:\n        print(type(error).__name__)\n"
    result = run_sandboxed(escaped(code) if mode == "escaped" else code)
    assert "PRIVATE KEY" not in result.stdout and "[project]" not in result.stdout
    assert result.stdout.split() == ["FileNotFoundError", "FileNotFoundError"]
    assert "bubblewrap" in result.isolation


@needs_bwrap
def test_listing_the_home_directory():
    home = Path.home()
    # what the interpreter needs from under home (here /root/.pyenv) is all there is of it
    needed = {
        Path(p).relative_to(home).parts[0]
        for p in (sys.base_prefix, sys.prefix, sys.executable)
        if Path(p).is_relative_to(home)
    }
    if not set(os.listdir(home)) - needed:
        pytest.skip(f"{home} holds nothing but the interpreter's path: nothing to hide")
    code = escaped(
        f"import os\ntry:\n    print(sorted(os.listdir({str(home)!r})))\n"
        "except FileNotFoundError:\n    print([])\n"
    )
    result = run_sandboxed(code)
    seen = set(eval(result.stdout))  # a printed list of names
    assert seen <= needed and ".ssh" not in seen, seen
    assert "bubblewrap" in result.isolation


@needs_bwrap
def test_fork_exec_from_a_reimported_posixsubprocess(tmp_path):
    target = tmp_path / "written-by-a-shell"
    shell = f"echo escaped > {target}; id -u"
    reimport = f"""
import os, sys
del sys.modules["_posixsubprocess"]
import _posixsubprocess  # a fresh copy, without the hook's wrapper
fork_exec = _posixsubprocess.fork_exec
ARGV = [b"/bin/sh", b"-c", {shell!r}.encode()]
{FORK_EXEC}
"""
    result = run_sandboxed(reimport)
    assert result.violation == "subprocess" and not result.ok
    assert "re-import of _posixsubprocess" in result.violations[0]
    # past the hook (the wrapper's own reference), the shell runs, as nobody, and cannot write
    code = f"import subprocess\nsubprocess.call(['/bin/sh', '-c', {shell!r}])"
    result = run_sandboxed(escaped(code))
    assert not target.exists()
    assert "cannot create" in result.stderr and result.stdout.split() == ["65534"]
    assert "bubblewrap" in result.isolation


@needs_bwrap
def test_posix_spawn(tmp_path):
    target = tmp_path / "spawned"
    code = f"import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'touch {target}'], {{}})"
    result = run_sandboxed(code)
    assert result.violation == "subprocess" and "os.posix_spawn" in result.violations[0]
    code = f"import os\npid = os.posix_spawn('/bin/sh', ['sh', '-c', 'touch {target}'], {{}})\n"
    code += "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))"
    result = run_sandboxed(escaped(code))
    assert result.stdout.strip() == "1" and not target.exists()  # touch failed: not visible
    assert "bubblewrap" in result.isolation


@needs_bwrap
def test_ctypes():
    code = "import ctypes\nlibc = ctypes.CDLL('libc.so.6')\nprint(libc.getuid())"
    result = run_sandboxed(code)
    assert result.violation == "ctypes" and not result.ok
    result = run_sandboxed(escaped(code))  # past the hook, C is only as strong as its uid
    assert result.ok and result.stdout.strip() == "65534", result.stderr
    assert "bubblewrap" in result.isolation


@pytest.fixture
def listener():
    """A TCP server on the host's 127.0.0.1 that records whether anyone connected."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@needs_bwrap
def test_a_socket_to_localhost(listener):
    port, accepted = listener
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
    result = run_sandboxed(code)
    assert result.violation == "network" and not result.ok
    code = f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)"
    code += "\nexcept OSError as error:\n    print(error.errno)"
    result = run_sandboxed(escaped(code))
    assert result.ok, result.stderr
    assert int(result.stdout) in (111, 101)  # ECONNREFUSED: its own loopback (or none at all)
    assert "network namespace" in result.isolation
    time.sleep(0.3)  # the listener's accept loop polls
    assert accepted == []


def _process_limit_in_force(**options) -> bool:
    isolation = run_sandboxed("pass", **options).isolation
    return any(layer.startswith("process limit") for layer in isolation)


BOMB = """
import os
print(os.getcwd(), flush=True)  # {marker}
while True:  # unbounded: only RLIMIT_NPROC stops it
    os.fork()
"""


@needs_bwrap
@pytest.mark.parametrize("mode", ["allowed subprocesses", "escaped"])
def test_a_fork_bomb(mode):
    options = {"max_processes": 8, "timeout_s": 5}
    if mode == "allowed subprocesses":
        options["allow_subprocess"] = True
    if not _process_limit_in_force(**options):
        pytest.fail("the process limit is not in force under bubblewrap: not running a bomb")
    marker = f"bomb-{uuid.uuid4().hex}"
    bomb = BOMB.format(marker=marker)
    start = time.monotonic()
    result = run_sandboxed(bomb if mode != "escaped" else escaped(bomb), **options)
    assert time.monotonic() - start < 7
    assert result.killed_by in ("processes", "timeout"), (result.error, result.stderr[-500:])
    assert "Resource temporarily unavailable" in result.stderr  # fork failed: EAGAIN
    assert any(layer.startswith("process limit (8 more)") for layer in result.isolation)
    assert "pid namespace" in result.isolation
    # nothing of the bomb survived the run (its processes name the sandbox dir or the marker)
    workdir = result.stdout.split()[0]
    assert _host_processes_running(workdir) + _host_processes_running(marker) == []


@needs_bwrap
@pytest.mark.parametrize("mode", ["plain", "escaped"])
def test_memory(mode):
    code = "block = bytearray(2 * 1024**3)\nprint('allocated')"
    result = run_sandboxed(escaped(code) if mode == "escaped" else code, memory_mb=256)
    assert result.killed_by == "memory" and "allocated" not in result.stdout
    assert result.error.startswith("MemoryError")


@needs_bwrap
@pytest.mark.parametrize("mode", ["plain", "escaped"])
def test_cpu(mode):
    code = "while True:\n    pass"
    result = run_sandboxed(escaped(code) if mode == "escaped" else code, timeout_s=1)
    assert result.killed_by == "timeout" and result.duration_s < 3
    assert any(layer.startswith("rlimits:") for layer in result.isolation)  # RLIMIT_CPU too


@needs_bwrap
@pytest.mark.parametrize("mode", ["plain", "escaped"])
def test_output(mode):
    code = "while True:\n    print('x' * 1000)"
    result = run_sandboxed(escaped(code) if mode == "escaped" else code, max_output_bytes=10_000)
    assert result.killed_by == "output" and len(result.stdout) < 11_000
    assert "[sandbox: output truncated at 10000 bytes" in result.stdout


@needs_bwrap
@pytest.mark.parametrize("mode", ["plain", "escaped"])
def test_a_huge_file(mode):
    code = "with open('huge.bin', 'wb') as f:\n    f.write(bytes(8 * 1024**2))"
    result = run_sandboxed(escaped(code) if mode == "escaped" else code, max_file_mb=1)
    assert result.killed_by == "file size" and not result.ok
    assert result.error.startswith("OSError: [Errno 27] File too large")


@needs_bwrap
@pytest.mark.parametrize("mode", ["allowed subprocesses", "escaped"])
def test_a_daemonised_orphan_does_not_outlive_the_run(mode):
    marker = f"30.{uuid.uuid4().int % 10**9:09d}"  # a unique `sleep` argument (30 s at most)
    daemon = f"""
import os, sys
if os.fork() == 0:
    os.setsid()  # a new session: out of the sandbox's process group
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
os.wait()
print("daemon started")
"""
    program = escaped(daemon) if mode == "escaped" else daemon
    result = run_sandboxed(program, allow_subprocess=mode != "escaped")
    assert result.ok and result.stdout.strip() == "daemon started", result.stderr
    assert "pid namespace" in result.isolation
    time.sleep(0.1)
    assert _host_processes_running(f"sleep\0{marker}") == []


@needs_bwrap
@pytest.mark.parametrize("mode", ["plain", "escaped"])
def test_writing_through_a_symlink_planted_in_the_sandbox_dir(tmp_path, mode):
    target = tmp_path / "authorized_keys"
    target.write_text("the owner's key\n")
    target.chmod(0o666)  # writable by anyone on the host: only the mount namespace protects it
    tmp_path.chmod(0o777)
    code = f"import os\nos.symlink({str(target)!r}, 'planted')\n"
    code += "with open('planted', 'a') as f:\n    f.write('attacker key')\n"
    result = run_sandboxed(escaped(code) if mode == "escaped" else code)
    assert target.read_text() == "the owner's key\n"
    assert not result.ok
    if mode == "plain":
        assert result.violation == "write outside sandbox" and str(target) in result.error
    else:  # the link points at nothing inside the sandbox
        assert result.error.startswith("FileNotFoundError") and "bubblewrap" in result.isolation


@needs_bwrap
def test_the_sandbox_view_is_read_only_but_for_the_sandbox_dir():
    code = escaped(
        "import os, sys\n"
        "for path in ('/tmp/x', '/x', '/usr/x', '/dev/x', sys.base_prefix + '/x', 'inside.txt'):\n"
        "    try:\n        open(path, 'w').close(); print(path, 'written')\n"
        "    except OSError as error:\n        print(path, error.errno)\n"
    )
    result = run_sandboxed(code)
    lines = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert lines.pop("inside.txt") == "written"
    assert set(lines.values()) <= {"13", "30"}, lines  # EACCES or EROFS


def test_without_bubblewrap_the_result_says_so_and_the_escape_works(tmp_path):
    """The fallback is honest: no bubblewrap in ``isolation``, and the hook really is the only
    thing in the way (the escape reads a file outside; as root here it could write one)."""
    secret = tmp_path / "secret"
    secret.write_text("PRIVATE KEY")
    secret.chmod(0o644)
    code = escaped(f"print(open({str(secret)!r}).read())")
    result = run_sandboxed(code, boundary="none")
    assert result.isolation[0] == "no bubblewrap (not requested: boundary='none')"
    assert "bubblewrap" not in result.isolation and "pid namespace" not in result.isolation
    assert "audit hook" in result.isolation
    assert result.stdout.strip() == "PRIVATE KEY"


def test_missing_bubblewrap_falls_back_or_refuses(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    result = run_sandboxed("print('ran')")
    assert result.ok and result.isolation[0] == "no bubblewrap (bwrap not found on PATH)"
    with pytest.raises(SandboxUnavailable, match="bwrap not found on PATH; install bubblewrap"):
        run_sandboxed("print('ran')", boundary="bubblewrap")


def test_a_bubblewrap_that_cannot_start_falls_back_or_refuses(tmp_path, monkeypatch):
    """Where namespaces are not permitted (a container without them), bwrap exits at once."""
    fake = tmp_path / "bwrap"  # a fault that cannot be caused otherwise on this machine
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    result = run_sandboxed("print('ran')")
    assert result.ok and result.stdout == "ran\n"
    expected = "no bubblewrap (failed to start: bwrap: No permissions to create new namespace)"
    assert result.isolation[0] == expected
    with pytest.raises(SandboxUnavailable, match="No permissions to create new namespace"):
        run_sandboxed("pass", boundary="bubblewrap")
    with pytest.raises(ValueError, match="boundary must be one of"):
        run_sandboxed("pass", boundary="container")
