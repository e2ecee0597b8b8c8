"""How a Ray worker that hosts a model is set up, before it builds anything.

Done inside the actor rather than through a Ray ``runtime_env``: a job-level runtime
environment keeps Ray from reusing the workers it has already started, so every actor (Serve's
controller and proxy among them) waits for a fresh process, measured at 4-9 s each here.
"""

from __future__ import annotations

import os


def prepare_worker(threads: int | None) -> None:
    """Give torch ``threads`` threads (None: leave its default), and make the process safe to
    fork.

    One actor per core budget: torch must not spawn more threads than it was given, or actors
    on one machine stall each other (measured: 12x slower fp32 decode). A worker that runs
    generated code forks a sandbox after its tokenizer has run; tokenizers' thread pool must
    not be carried into the child (it warns and can deadlock), so it stays off in workers.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
