"""SFT training data: prompt/response rows, validated, rendered and tokenized once.

A JSONL of ``{"prompt": ..., "response": ...}`` (the prompt a string or chat messages, optional
``"system"``) or ``{"messages": [...]}`` whose last message is the assistant's answer. The
tokenizer's chat template renders each row exactly as ``CausalLM.generate`` will at inference.
Loss is only on the response (and its end-of-turn token): :class:`Tokenized` marks where each
row's answer starts. A row longer than ``max_length`` loses prompt tokens from the left; the
response is never cut (a response that alone does not fit is an error), and truncated rows are
counted and warned about.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slm_agents.finetune.data import DataError, read_rows

Messages = list[dict[str, str]]


@dataclass
class ChatExample:
    prompt: Messages  # the conversation up to the answer
    response: str  # the assistant's answer, the only text trained on


@dataclass
class ChatData:
    """Prompt/response pairs, validated; ``source`` names the file (and part) for messages."""

    examples: list[ChatExample]
    source: str = ""

    def __len__(self) -> int:
        return len(self.examples)

    def split(self, validation: float, seed: int = 0) -> tuple[ChatData, ChatData]:
        """Deterministic split (a seeded shuffle of row numbers)."""
        import random

        order = list(range(len(self)))
        random.Random(seed).shuffle(order)
        held = set(order[: max(1, round(len(self) * validation))]) if validation > 0 else set()
        keep = [e for i, e in enumerate(self.examples) if i not in held]
        out = [e for i, e in enumerate(self.examples) if i in held]
        return ChatData(keep, f"{self.source}:train"), ChatData(out, f"{self.source}:validation")

    def encode(self, tokenizer: Any, max_length: int) -> Tokenized:
        return encode_chat(tokenizer, self, max_length)


class Encodable(Protocol):
    """Training data: chat pairs (:class:`ChatData`) or plain text windows (recipes' code)."""

    source: str

    def __len__(self) -> int: ...

    def encode(self, tokenizer: Any, max_length: int) -> Tokenized: ...


def load_chat(path: str | Path) -> ChatData:
    """Load and validate a prompt/response (or messages) JSONL; errors name the row."""
    rows, first = read_rows(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    examples = [_row_to_example(row, f"{path}: row {first + i}") for i, row in enumerate(rows)]
    return ChatData(examples, str(path))


def _row_to_example(row: dict[str, Any], where: str) -> ChatExample:
    if "messages" in row:
        messages = row["messages"]
        _check_messages(messages, where)
        last = messages[-1]
        if last["role"] != "assistant":
            raise DataError(f"{where}: the last message must be the assistant's answer")
        if len(messages) < 2:
            raise DataError(f"{where}: 'messages' needs a prompt before the assistant's answer")
        return ChatExample([dict(m) for m in messages[:-1]], _text(last["content"], where))
    missing = [key for key in ("prompt", "response") if key not in row]
    if missing:
        raise DataError(
            f"{where}: no {' or '.join(repr(k) for k in missing)}; each row needs "
            f"'prompt' and 'response' (or 'messages'); keys are {sorted(row)}"
        )
    prompt = row["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": _text(prompt, where, "prompt")}]
    else:
        _check_messages(prompt, where, "prompt")
    if row.get("system"):
        prompt = [{"role": "system", "content": str(row["system"])}, *prompt]
    return ChatExample(prompt, _text(row["response"], where, "response"))


def _check_messages(messages: Any, where: str, key: str = "messages") -> None:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: {key!r} must be a non-empty list of chat messages")
    for m in messages:
        if not (isinstance(m, dict) and {"role", "content"} <= m.keys()):
            raise DataError(f"{where}: each message needs 'role' and 'content', got {m!r}")


def _text(value: Any, where: str, key: str = "content") -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: empty or non-text {key!r}")
    return value


class Tokenized:
    """Rows tokenized once. Positions before ``starts[i]`` are context only (no loss)."""

    def __init__(self, ids: list[list[int]], starts: list[int], pad_id: int, truncated: int = 0):
        self.ids, self.starts, self.pad_id, self.truncated = ids, starts, pad_id, truncated
        self.lengths = [len(x) for x in ids]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def target_tokens(self) -> int:
        return sum(n - s for n, s in zip(self.lengths, self.starts, strict=True))

    def batch(self, rows: Sequence[int]) -> dict[str, Any]:
        """Right-padded ids, attention mask and labels (-100 on context and padding)."""
        import torch

        width = max(self.lengths[i] for i in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, i in enumerate(rows):
            row = torch.tensor(self.ids[i])
            ids[r, : self.lengths[i]] = row
            mask[r, : self.lengths[i]] = 1
            labels[r, self.starts[i] : self.lengths[i]] = row[self.starts[i] :]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def encode_chat(tokenizer: Any, data: ChatData, max_length: int) -> Tokenized:
    """Render each pair with the chat template; cut long prompts from the left."""
    if not tokenizer.chat_template:
        raise ValueError("the base model has no chat template; chat SFT needs a chat model")
    ids, starts, truncated = [], [], 0
    for number, example in enumerate(data.examples, start=1):
        prompt_text = tokenizer.apply_chat_template(
            example.prompt, tokenize=False, add_generation_prompt=True
        )
        full = tokenizer.apply_chat_template(
            [*example.prompt, {"role": "assistant", "content": example.response}], tokenize=False
        )
        if not full.startswith(prompt_text):
            raise ValueError(
                "the tokenizer's chat template renders the answer differently from the prompt "
                "it generates from; SFT needs a template whose prompt is a prefix of the chat"
            )
        prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        # The answer ends at the end-of-turn token; what the template adds after it (a newline)
        # is never generated, so it is not trained on.
        answer = tokenizer(full[len(prompt_text) :].rstrip(), add_special_tokens=False)
        answer = answer["input_ids"]
        if len(answer) > max_length - 1:
            raise DataError(
                f"{data.source}: example {number}: the response has {len(answer)} tokens, "
                f"more than max_length={max_length} allows; raise max_length or shorten it"
            )
        room = max_length - len(answer)
        if len(prompt) > room:
            prompt, truncated = prompt[len(prompt) - room :], truncated + 1
        ids.append(prompt + answer)
        starts.append(len(prompt))
    if truncated:
        warnings.warn(
            f"{data.source}: {truncated} of {len(data)} prompts were longer than "
            f"max_length={max_length} allows and lost tokens from the start",
            stacklevel=2,
        )
    return Tokenized(ids, starts, _pad_id(tokenizer), truncated)


def _pad_id(tokenizer: Any) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id or 0)
