"""The two things every backend returns, and the batch loop they share.

A backend validates each input on its own, runs the valid ones as one batch, and hands back one
result per input in input order. A bad input becomes a result with ``error`` set, so one empty
prompt never costs the other 63 requests in a batch their answers.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar


class InputError(ValueError):
    """One request is unusable (empty, too long, wrong type, invalid schema).

    Raised inside validation and turned into that request's ``error``; never crosses a batch.
    """


@dataclass
class Usage:
    """Token counts for one request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Generation:
    """What a causal model produced for one prompt.

    ``confidence`` is the geometric mean of the chosen tokens' probabilities (see
    ``docs/models.md``); ``parsed`` holds the decoded JSON when a schema was requested.
    ``token_ids[i]`` is the token whose log-probability is ``token_logprobs[i]``, so a caller
    can tie probabilities to spans of ``text`` (the Extractor's per-field confidence does).
    """

    text: str = ""
    token_logprobs: list[float] = field(default_factory=list)
    confidence: float = 0.0
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "error"  # "stop", "length" or "error"
    latency_s: float = 0.0
    parsed: Any = None
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)  # the ids behind token_logprobs

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Prediction:
    """What a classifier said about one text: the label and the full probability vector."""

    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.0
    latency_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


Item = TypeVar("Item")
Valid = TypeVar("Valid")
Out = TypeVar("Out")


def run_isolated(
    items: Sequence[Item],
    validate: Callable[[Item], Valid],
    run_valid: Callable[[list[Valid]], list[Out]],
    on_error: Callable[[str], Out],
) -> list[Out]:
    """Validate each item, run the valid ones as one batch, keep input order.

    ``validate`` raises :class:`InputError` for a bad item; its message becomes that item's
    error. Anything else is a bug and propagates.
    """
    results: list[Out | None] = [None] * len(items)
    valid_positions: list[int] = []
    valid_items: list[Valid] = []
    for position, item in enumerate(items):
        try:
            valid_items.append(validate(item))
            valid_positions.append(position)
        except InputError as exc:
            results[position] = on_error(f"request {position}: {exc}")
    if valid_items:
        for position, out in zip(valid_positions, run_valid(valid_items), strict=True):
            results[position] = out
    return results  # type: ignore[return-value]


class Model(ABC):
    """A loaded model with a name; subclasses add ``generate`` or ``predict``."""

    name: str
    kind: str  # "causal" or "classifier"

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Parameters worth logging to MLflow: name, source, device, dtype, sizes."""


class Timer:
    """Wall-clock seconds of a block, for ``latency_s`` fields."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def pick_device(device: str) -> str:
    """'auto' picks cuda when torch sees a GPU; an explicit cuda without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device


def quantize_int8(module: Any) -> Any:
    """Dynamic int8 quantization of every Linear layer (weights int8, activations on the fly).

    CPU only. torch 2.13 marks ``torch.ao.quantization`` deprecated in favour of torchao; it
    still works and needs no extra package, so the warning is silenced here.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*")
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
