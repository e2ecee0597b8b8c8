"""Text deltas while ``model.generate`` runs, and a way to stop it early.

:class:`TextDeltas` is a transformers streamer that receives token ids and decodes them itself,
so it can promise that the deltas it emits join to exactly the text ``CausalLM`` returns at the
end: it never emits text past the end-of-sequence token, text that a stop string would cut, or
half of a multi-byte character. :class:`CancelFlag` ends generation at the next step once its
event is set (the consumer of a stream went away).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


def safe_prefix(text: str, stops: Sequence[str]) -> str:
    """The part of ``text`` that no later token can change or cut.

    A stop string already present cuts the text there. Otherwise the last ``len(longest stop)``
    characters are held back (a stop string may be starting in them), and so is a trailing
    replacement character (a multi-byte character whose other bytes come with the next token).
    """
    found = [text.find(s) for s in stops if s in text]
    if found:
        return text[: min(found)]
    hold = max((len(s) for s in stops), default=0)
    safe = text[: len(text) - hold] if hold else text
    return safe.rstrip("\ufffd")


class TextDeltas(BaseStreamer):
    """Decodes one row's new tokens as they come and hands each new piece of text to ``emit``.

    Decoding the whole prefix at each step (not token by token) is what tokenizers that merge
    bytes or spaces across tokens need to give the same text as the final decode.
    """

    def __init__(
        self, tokenizer: Any, stops: Sequence[str], eos_ids: set[int], emit: Callable[[str], None]
    ):
        self.tokenizer, self.stops, self.eos_ids, self.emit = tokenizer, tuple(stops), eos_ids, emit
        self.ids: list[int] = []
        self.emitted = ""
        self._prompt_seen = False
        self._ended = False  # an end-of-sequence token came: the text is complete

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first hands over the prompt
            self._prompt_seen = True
            return
        if self._ended:
            return
        for token in value.reshape(-1).tolist():
            if token in self.eos_ids:
                self._ended = True
                break
            self.ids.append(int(token))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        safe = safe_prefix(text, self.stops)
        if len(safe) > len(self.emitted) and safe.startswith(self.emitted):
            delta, self.emitted = safe[len(self.emitted) :], safe
            self.emit(delta)

    def end(self) -> None:
        """Nothing to flush: the caller sends what is held back once the final text is known."""


class CancelFlag(StoppingCriteria):
    """Stops every row at the next step once ``event`` is set."""

    def __init__(self, event: Any):
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        stop = self.event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
