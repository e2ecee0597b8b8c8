"""The HTTP front of ``slm-agents serve``: OpenAI routes on FastAPI, behind Ray Serve's proxy.

The ingress holds no model. It checks the key and the request, picks the deployment the model id
names (``base``, ``base:adapter`` or ``team:name``), and turns whatever happens there into an
OpenAI-shaped answer with the right status: 400 for a bad request (naming the field), 401
without the key, 404 for an unknown model or adapter (listing what exists), 429 with
``Retry-After`` past the queue bounds, 503 with ``Retry-After`` when a replica died under the
request, 504 when it ran past the timeout (its decoding is cancelled; a team's run is not),
422 when a team cannot answer, 500 (type and first line, no traceback) only for bugs. A
stream's timeout covers its first piece; a failure after that ends the stream with an error
event in the same shape.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures' types at run
# time, and Serve's class ingress resolves them outside this module.
import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError

from slm_agents.serve.protocol import (
    DEFAULT_MAX_TOKENS,
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    chat_chunk,
    chat_completion,
    completion_id,
    text_chunk,
    text_completion,
    usage_body,
)

TEAM_PREFIX = "team:"
app = FastAPI(title="slm-agents", docs_url=None, redoc_url=None)


@app.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


def internal_error(exc: BaseException) -> APIError:
    """A bug as a 500 in OpenAI's shape: the exception's type and first line, never a
    traceback (a replica's exception arrives as a RayTaskError whose text is one)."""
    cause = getattr(exc, "cause", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0][:300]
    return APIError(500, f"internal error: {type(cause).__name__}: {first}", type="server_error")


@app.exception_handler(Exception)
async def _bug(_: Request, exc: Exception) -> JSONResponse:
    """A bug still answers in OpenAI's shape, never a bare 500 page."""
    return JSONResponse(internal_error(exc).body(), status_code=500)


def parse_body(raw: bytes, model: type) -> Any:
    """The request body as ``model``; run after the key check, so a caller without the key
    learns nothing about the schema. Not JSON, or a field of the wrong type: 400 naming it."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        if first.get("type") == "json_invalid":
            raise APIError(400, f"the body is not valid JSON: {first.get('msg')}") from exc
        param = ".".join(loc) or None
        message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
        raise APIError(400, message, param=param) from exc


def key_digest(key: str | None) -> str | None:
    """What the ingress keeps of the API key: its SHA-256, so the key itself never reaches
    Ray's actor arguments, the dashboard or a log."""
    return hashlib.sha256(key.encode()).hexdigest() if key else None


async def _awaited(response: Any) -> Any:
    return await response


def _checked(answer: dict[str, Any]) -> dict[str, Any]:
    error = answer.get("error")
    if error is None:
        return answer
    status = error.get("status", 500)
    default_type = "invalid_request_error" if status < 500 else "server_error"
    raise APIError(
        status,
        error.get("message") or "error",
        type=error.get("type", default_type),
        param=error.get("param"),
        code=error.get("code"),
    )


def _as_api_error(exc: Exception) -> APIError:
    """What a failure inside Serve means for the client."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, BackPressureError):
        return APIError(
            429,
            "the server is at capacity (queue full); retry after the Retry-After seconds",
            type="rate_limit_exceeded",
            code="rate_limit_exceeded",
            retry_after_s=exc.retry_after_s or 1,
        )
    if isinstance(exc, RayActorError | ActorUnavailableError):
        return APIError(
            503,
            "the replica serving this request stopped; retry (Serve restarts it)",
            type="service_unavailable",
            retry_after_s=1,
        )
    return internal_error(exc)


def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    async def events() -> AsyncIterator[str]:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    return events()


async def _stream_events(
    first: dict, pieces: Any, model: str, chat: bool, include_usage: bool
) -> AsyncIterator[str]:
    chunk_id = completion_id("chatcmpl" if chat else "cmpl")

    def event(text: str, finish: str | None = None) -> str:
        if chat:
            delta = {"content": text} if text or finish is None else {}
            chunk = chat_chunk(chunk_id, model, delta, finish)
        else:
            chunk = text_chunk(chunk_id, model, text, finish)
        return f"data: {json.dumps(chunk)}\n\n"

    if chat:
        yield f"data: {json.dumps(chat_chunk(chunk_id, model, {'role': 'assistant'}))}\n\n"
    piece = first
    try:
        while True:
            if "final" in piece:
                final = piece["final"]
                yield event("", final["finish_reason"])
                if include_usage:
                    usage = {"id": chunk_id, "object": "chat.completion.chunk" if chat else
                             "text_completion", "model": model, "choices": [],
                             "usage": usage_body(final)}  # fmt: skip
                    yield f"data: {json.dumps(usage)}\n\n"
                break
            if "error" in piece:
                error = piece["error"]
                body = APIError(error.get("status", 500), error.get("message") or "error",
                                type=error.get("type", "server_error")).body()  # fmt: skip
                yield f"data: {json.dumps(body)}\n\n"
                break
            yield event(piece["delta"])
            piece = await pieces.__anext__()
    except StopAsyncIteration:
        pass
    except Exception as exc:  # the replica died mid-stream: say so in the stream, then end it
        yield f"data: {json.dumps(_as_api_error(exc).body())}\n\n"
    finally:
        pieces.cancel()
    yield "data: [DONE]\n\n"


# Everything the routes use is defined above the class: ``serve.ingress`` freezes the app (a
# pickle round trip) when the class is decorated.


@serve.ingress(app)
class Ingress:
    """Routes and error mapping; ``slm_agents.serve.app`` binds it to the model deployments."""

    def __init__(
        self,
        models: dict[str, Any],
        teams: dict[str, Any],
        adapters: dict[str, list[str]],
        key_sha256: str | None,
        timeouts: dict[str, float],
    ):
        self.models, self.teams, self.adapters = models, teams, adapters
        self.key_sha256, self.timeouts = key_sha256, timeouts
        self.created = int(time.time())

    # ------------------------------------------------------------------ routes
    @app.get("/health")
    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "models": len(self.models), "teams": len(self.teams)}

    @app.get("/v1/models")
    async def list_models(self, request: Request) -> dict[str, Any]:
        self._authorize(request)
        data = []
        for model_id in self.models:
            data.append(self._model_card(model_id, None))
            data += [self._model_card(f"{model_id}:{a}", model_id) for a in self.adapters[model_id]]
        data += [self._model_card(TEAM_PREFIX + name, None) for name in self.teams]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Any:
        self._authorize(request)
        body = parse_body(await request.body(), ChatCompletionRequest)
        body.check_n()
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        target, adapter = self._resolve(body.model)
        if target in self.teams:
            return await self._team(body, target)
        job = {
            "prompt": body.chat(),
            "chat": True,
            "max_new_tokens": body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "seed": body.seed,
            "stop": body.stops(),
            "json_schema": body.response_format.schema() if body.response_format else None,
            "adapter": adapter,
            "logprobs": body.logprobs,
            "top_logprobs": body.top_logprobs or 0,
        }
        if body.stream:
            return await self._stream(target, adapter, job, body, chat=True)
        answer = await self._call(self._handle(target).generate, job, target)
        return chat_completion(answer, body.model, {"slm_agents": answer.get("batch")})

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> Any:
        self._authorize(request)
        body = parse_body(await request.body(), CompletionRequest)
        body.check_n()
        if body.echo:
            raise APIError(400, "echo is not supported", param="echo")
        target, adapter = self._resolve(body.model)
        if target in self.teams:
            raise APIError(400, "teams answer chat completions only", param="model")
        job = {
            "prompt": body.text(),
            "chat": False,
            "max_new_tokens": body.max_tokens
            or CompletionRequest.model_fields["max_tokens"].default,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "seed": body.seed,
            "stop": body.stops(),
            "json_schema": None,
            "adapter": adapter,
            "logprobs": body.logprobs is not None,
            "top_logprobs": body.logprobs or 0,
        }
        if body.stream:
            return await self._stream(target, adapter, job, body, chat=False)
        answer = await self._call(self._handle(target).generate, job, target)
        return text_completion(answer, body.model)

    # ------------------------------------------------------------------ helpers
    def _authorize(self, request: Request) -> None:
        if self.key_sha256 is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            key_digest(given.strip()) or "", self.key_sha256
        ):
            raise APIError(
                401,
                "missing or wrong API key: send it as 'Authorization: Bearer <key>'",
                code="invalid_api_key",
            )

    def _model_card(self, model_id: str, parent: str | None) -> dict[str, Any]:
        return {
            "id": model_id,
            "object": "model",
            "created": self.created,
            "owned_by": "slm-agents",
            "root": parent or model_id,
            "parent": parent,
        }

    def _available(self) -> list[str]:
        ids = list(self.models)
        ids += [f"{m}:{a}" for m in self.models for a in self.adapters[m]]
        return ids + [TEAM_PREFIX + t for t in self.teams]

    def _resolve(self, model: str) -> tuple[str, str | None]:
        """(deployment key, adapter): a base model, ``base:adapter`` or ``team:name``."""
        if model.startswith(TEAM_PREFIX) and model[len(TEAM_PREFIX) :] in self.teams:
            return model[len(TEAM_PREFIX) :], None
        base, _, adapter = model.partition(":")
        if base in self.models and not adapter:
            return base, None
        if base in self.models and adapter in self.adapters[base]:
            return base, adapter
        if base in self.models:
            raise APIError(
                404,
                f"model {model!r}: {base} has no adapter {adapter!r}; its adapters: "
                f"{self.adapters[base]}",
                param="model",
                code="model_not_found",
            )
        raise APIError(
            404,
            f"model {model!r} does not exist; available: {self._available()}",
            param="model",
            code="model_not_found",
        )

    def _handle(self, target: str) -> Any:
        """The model's handle. The adapter travels in the job, not as Serve's
        ``multiplexed_model_id``: Serve's batching splits a batch by that id, and requests for
        different adapters are meant to share one forward pass. Any replica loads any adapter
        on first use (its LRU is ``serve.multiplexed``'s)."""
        return self.models[target]

    async def _call(self, method: Any, payload: Any, target: str) -> dict[str, Any]:
        """One call to a deployment, bounded by its timeout; failures become APIErrors."""
        timeout_s = self.timeouts[target]
        response = method.remote(payload)
        try:
            answer = await asyncio.wait_for(_awaited(response), timeout=timeout_s)
        except TimeoutError as exc:
            response.cancel()
            raise APIError(
                504,
                f"the request ran past the server's timeout of {timeout_s:g} s and was cancelled",
                type="timeout",
                code="timeout",
            ) from exc
        except asyncio.CancelledError:  # the client went away: so does the work
            response.cancel()
            raise
        except Exception as exc:
            raise _as_api_error(exc) from exc
        return _checked(answer)

    async def _team(self, body: ChatCompletionRequest, name: str) -> Any:
        users = [m for m in body.messages if m.role == "user"]
        if not users or not users[-1].text().strip():
            raise APIError(
                400, "a team answers the last user message; there is none", param="messages"
            )
        answer = await self._call(self.teams[name].run, users[-1].text(), TEAM_PREFIX + name)
        extra = {"slm_agents": answer.get("slm_agents")}
        if body.stream:
            chunk_id = completion_id("chatcmpl")
            chunks = [
                chat_chunk(chunk_id, body.model, {"role": "assistant", "content": answer["text"]}),
                chat_chunk(chunk_id, body.model, {}, answer["finish_reason"]) | extra,
            ]
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        return chat_completion(answer, body.model, extra)

    async def _stream(self, target: str, adapter: str | None, job: dict, body: Any, chat: bool):
        """Server-sent events; the first piece is awaited before the response starts, so a bad
        request still gets its status code instead of a broken stream."""
        pieces = self._handle(target).options(stream=True).stream.remote(job)
        try:
            first = await asyncio.wait_for(pieces.__anext__(), timeout=self.timeouts[target])
        except TimeoutError as exc:
            pieces.cancel()
            raise APIError(
                504, "no first token before the timeout", type="timeout", code="timeout"
            ) from exc
        except StopAsyncIteration as exc:
            raise APIError(
                500, "the model ended the stream without an answer", type="server_error"
            ) from exc
        except asyncio.CancelledError:
            pieces.cancel()
            raise
        except Exception as exc:
            raise _as_api_error(exc) from exc
        _checked(first)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream_events(first, pieces, body.model, chat, include_usage)
        return StreamingResponse(events, media_type="text/event-stream")
