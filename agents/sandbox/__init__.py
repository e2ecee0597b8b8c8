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

Modules: ``parent.py`` (:func:`run_sandboxed`, :func:`run_tests`: the process, its limits and
its end), ``bootstrap.py`` (what runs in the child before the code; standard library only, run
from a copy in the sandbox directory), ``report.py`` (:class:`SandboxResult`).
"""

from slm_agents.sandbox.parent import run_sandboxed, run_tests
from slm_agents.sandbox.report import SandboxResult

__all__ = ["SandboxResult", "run_sandboxed", "run_tests"]
