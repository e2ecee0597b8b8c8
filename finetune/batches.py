"""Length-bucketed batches: similar lengths together, so little compute is spent on padding.

On CPU the cost of a batch is its longest sequence times its size. Shuffling, then sorting within
windows of ``window`` batches, then shuffling the batches keeps training random while cutting the
padding (on BANKING77 about 2x faster than plain shuffled batches). The order is a pure function of
``seed`` and ``epoch``, so a resumed run sees exactly the batches the interrupted one would have.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def bucketed(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, window: int = 50
) -> list[list[int]]:
    """Index batches for one training epoch."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out: list[list[int]] = []
    span = batch_size * window
    for start in range(0, len(order), span):
        part = sorted(order[start : start + span], key=lambda i: lengths[i])
        out.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(out)
    return out


def by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches for inference: sorted by length, no randomness (map results back by index)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
