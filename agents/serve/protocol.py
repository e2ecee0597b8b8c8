"""The OpenAI wire format the server speaks: request bodies, response bodies, errors.

Requests are pydantic models, so a wrong type is a 400 that names the field; anything a client
may send that we do not use is ignored, as OpenAI-compatible servers do. Every error leaves in
OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with its HTTP status.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_TOKENS = 256  # when a chat request names none (OpenAI's is "up to the context")


class APIError(Exception):
    """An answer that is an error: HTTP status plus OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.retry_after_s = param, code, retry_after_s

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after_s)))}


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        kinds = sorted({p.type for p in self.content if p.type != "text"})
        if kinds:
            raise APIError(400, f"only text content is supported, got {kinds}", param="messages")
        return "".join(p.text or "" for p in self.content)


class JsonSchemaFormat(_Lenient):
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def schema(self) -> dict[str, Any] | None:
        if self.type == "json_schema":
            if self.json_schema is None:
                raise APIError(
                    400,
                    "response_format.type is json_schema but json_schema is missing",
                    param="response_format.json_schema",
                )
            return self.json_schema.schema_
        return {"type": "object"} if self.type == "json_object" else None


class StreamOptions(_Lenient):
    include_usage: bool = False


class _Sampling(_Lenient):
    """What chat and text completions share. ``temperature`` defaults to 0 (greedy): a
    135M-parameter model sampled at OpenAI's default of 1 rambles."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise APIError(400, "stop takes up to 4 non-empty strings", param="stop")
        return stops

    def check_n(self) -> None:
        if self.n != 1:
            raise APIError(400, f"n={self.n}: only n=1 is supported", param="n")


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    def chat(self) -> list[dict[str, str]]:
        """Our chat format; OpenAI's ``developer`` role is the system message."""
        role = {"developer": "system"}
        return [{"role": role.get(m.role, m.role), "content": m.text()} for m in self.messages]


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for text completions
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise APIError(400, "prompt: send one prompt per request", param="prompt")
        return self.prompt[0]


def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage_body(answer: dict[str, Any]) -> dict[str, int]:
    prompt, completion = answer["prompt_tokens"], answer["completion_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_logprobs(answer: dict[str, Any]) -> dict[str, Any] | None:
    tokens = answer.get("tokens")
    if tokens is None:
        return None
    top = answer.get("top_logprobs") or [[] for _ in tokens]
    return {
        "content": [
            _token(token, logprob) | {"top_logprobs": [_token(t, lp) for t, lp in others]}
            for (token, logprob), others in zip(tokens, top, strict=True)
        ]
    }


def chat_completion(answer: dict[str, Any], model: str, extra: dict | None = None) -> dict:
    """A ``chat.completion`` body from a replica's answer (see ``model_server.answer``)."""
    body = {
        "id": completion_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer["text"]},
                "logprobs": chat_logprobs(answer),
                "finish_reason": answer["finish_reason"],
            }
        ],
        "usage": usage_body(answer),
    }
    if extra:
        body.update(extra)
    return body


def text_completion(answer: dict[str, Any], model: str) -> dict:
    tokens = answer.get("tokens")
    logprobs = None
    if tokens is not None:
        top = answer.get("top_logprobs")
        logprobs = {
            "tokens": [t for t, _ in tokens],
            "token_logprobs": [lp for _, lp in tokens],
            "top_logprobs": [dict(step) for step in top] if top else None,
            "text_offset": None,
        }
    return {
        "id": completion_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": answer["text"],
                "logprobs": logprobs,
                "finish_reason": answer["finish_reason"],
            }
        ],
        "usage": usage_body(answer),
    }


def chat_chunk(
    chunk_id: str, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def text_chunk(chunk_id: str, model: str, text: str, finish_reason: str | None = None) -> dict:
    return {
        "id": chunk_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
