"""What every backend returns, what agents need of a backend, and the batch loop they share.

A backend validates each input on its own, runs the valid ones as one batch, and hands back one
result per input in input order. A bad input becomes a result with ``error`` set, so one empty
prompt never costs the other 63 requests in a batch their answers.

Agents depend on the protocols here (:class:`TextGenerator`, :class:`TextClassifier`), not on
``CausalLM`` or ``EncoderClassifier``: any object with these methods (an HTTP endpoint, a
scripted test double) can stand in. Capabilities only some backends have (LoRA adapters, tying
tokens to characters) are separate optional protocols that an agent checks for.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable


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
    ``docs/models.md``), or None when the backend has no token probabilities to give (an HTTP
    endpoint that returns no logprobs): "no confidence available", never a made-up number.
    ``parsed`` holds the decoded JSON when a schema was requested.
    ``token_ids[i]`` is the token whose log-probability is ``token_logprobs[i]``, so a caller
    can tie probabilities to spans of ``text`` (the Extractor's per-field confidence does).
    """

    text: str = ""
    token_logprobs: list[float] = field(default_factory=list)
    confidence: float | None = 0.0  # None: no confidence available
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "error"  # "stop", "length" or "error"
    latency_s: float = 0.0
    parsed: Any = None
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)  # the ids behind token_logprobs
    # with top_logprobs=k: per generated token, the k most likely (token id, logprob)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    # set by slm_agents.privacy.RedactingGenerator: {"counts": {kind: n}, "seconds": s}
    redaction: dict[str, Any] | None = None

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


Messages = list[dict[str, str]]
"""A chat: ``{"role", "content"}`` dicts. A last message from the assistant is a prefill."""


@runtime_checkable
class TextGenerator(Protocol):
    """Text in, text out: all that an agent needs of a causal model.

    ``generate`` takes a list of prompts, each plain text or a chat (:data:`Messages`), and
    returns one :class:`Generation` per prompt, in order; a bad prompt is an error Generation,
    never an exception for the batch. A chat whose last message is the assistant's is a
    *prefill*: the reply continues that message and ``Generation.text`` does not repeat it.

    Options are keywords, and agents pass only those they set, so a backend needs to accept
    only what its agents use: ``max_new_tokens``, ``temperature`` (0: greedy), ``top_p``,
    ``seed``, ``stop`` (strings that end the reply, not included), ``chat=False`` (plain text
    goes in as it is: completion for base models), ``json_schema`` / ``regex`` (the reply
    follows them; ``Generation.parsed`` holds the parsed JSON) and ``adapter`` (a LoRA adapter
    by name). A backend that cannot honour an option it is given should raise, naming it.

    ``name`` names the model in Steps and prices it (``slm_agents.pricing``); token counts come
    from ``Generation.usage``.
    """

    name: str

    def generate(self, prompts: Sequence[str | Messages], **options: Any) -> list[Generation]: ...


@runtime_checkable
class TextClassifier(Protocol):
    """Texts in, one :class:`Prediction` per text out, over a fixed set of ``labels``."""

    name: str
    labels: Sequence[str]

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


@runtime_checkable
class AdapterHost(Protocol):
    """Optional: a generator that loads LoRA adapters and selects them per call (``adapter=``)."""

    @property
    def adapters(self) -> list[str]: ...

    def load_adapter(self, path: str, name: str) -> None: ...


@runtime_checkable
class TokenAligned(Protocol):
    """Optional: a generator that can say where each generated token ends in the text.

    ``token_ends(Generation.token_ids)[i]`` is the character offset in ``Generation.text``
    where token ``i`` ends (non-decreasing), which ties ``token_logprobs`` to spans of the text
    (the Extractor's per-field confidence).
    """

    def token_ends(self, token_ids: Sequence[int]) -> list[int]: ...


def mean_confidence(logprobs: Sequence[float]) -> float:
    """exp(mean of the finite log-probs of the chosen tokens): every backend's confidence
    (``docs/models.md``); 0.0 when there are none."""
    import math

    chosen = [lp for lp in logprobs if math.isfinite(lp)]
    return math.exp(sum(chosen) / len(chosen)) if chosen else 0.0


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
