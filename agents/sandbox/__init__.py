"""Run model-generated Python in a subprocess that contains accidents, and by default attacks.

``run_sandboxed(code)`` runs ``code`` with ``python -I -B`` in a fresh temporary directory (its
cwd, HOME and TMPDIR; removed afterwards) with a minimal environment, and returns a
:class:`SandboxResult`. ``run_tests(solution, tests, entry_point)`` does the same for a
HumanEval-style problem (``check(entry_point)`` must raise nothing).

What contains the code, from the outside in (``SandboxResult.isolation`` lists what was in force):

- **bubblewrap** (``boundary="auto"``, when ``bwrap`` works here): new mount, pid, network, IPC
  and UTS namespaces. Only ``/usr``, the interpreter's own directories and the sandbox dir are
  visible, read-only but the sandbox dir: no home, no project, no host ``/tmp``. The code
  runs as an unprivileged uid, sees only its own processes, and every process left when the
  run ends dies with the pid namespace. ``boundary="bubblewrap"`` raises
  :class:`SandboxUnavailable` where it cannot run; ``"none"`` skips it.
- **Process group kill.** The child starts its own session; on timeout, on too much output and
  when it exits, the whole group gets SIGKILL.
- **rlimits** (set by the child before the user code runs, kept across ``exec``): address space
  (``memory_mb``), CPU seconds (a backstop for the wall-clock timeout), file size, no core
  files, and the number of processes (``max_processes``). The kernel does not apply the process
  limit to root, so as root the child drops to ``nobody`` (always under bubblewrap; without it
  only when ``nobody`` can read the interpreter's files), else the limit is reported as missing.
- **Network namespace**: bubblewrap's, or without it one the child enters where the OS allows.
- **Audit hook** (:pep:`578`), installed before the user code: internet sockets, writes outside
  the sandbox dir, starting processes, signals outside the sandbox, ``ctypes``. A blocked
  operation raises ``PermissionError("sandbox blocked <kind>: ...")`` and is reported to the
  parent, so ``SandboxResult.violation`` is set even when the code catches the error.

Honest limits: the audit hook is **not a security boundary** (a C extension or the original
``fork_exec`` in its wrapper's closure gets past it); bubblewrap is the boundary, and it shares
the kernel (no seccomp filter). Without bubblewrap, files outside stay readable and what gets past
the hook runs with the child's uid. ``docs/sandbox.md`` lists what each layer stops and does not.

Modules: ``parent.py`` (:func:`run_sandboxed`, :func:`run_tests`: the process, its limits and
its end), ``bubblewrap.py`` (the outer layer's command line and whether it works here),
``bootstrap.py`` (what runs in the child before the code; standard library only, run from a copy
in the sandbox directory), ``report.py`` (:class:`SandboxResult`).
"""

from slm_agents.sandbox.bubblewrap import SandboxUnavailable
from slm_agents.sandbox.parent import run_sandboxed, run_tests
from slm_agents.sandbox.report import SandboxResult

__all__ = ["SandboxResult", "SandboxUnavailable", "run_sandboxed", "run_tests"]
