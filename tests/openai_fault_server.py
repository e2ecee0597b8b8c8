"""A real OpenAI-compatible HTTP server on 127.0.0.1, scriptable per test, that records requests.

Why a server and not a mock: the client under test is the official ``openai`` package over real
HTTP, so timeouts, closed connections, status codes and headers are the real thing. A test
scripts what goes wrong (:class:`Fault`, queued: each is used by the first request it matches)
and what a good reply says (``reply``: a function of the request); every request is recorded
(:class:`Recorded`: path, JSON body, headers, arrival time), so tests assert what was *sent*.

Use::

    with FaultServer() as server:
        server.push(Fault.status(429, retry_after="1"))
        endpoint = OpenAIEndpoint(server.base_url, "gpt-4o-mini")
        ...
        assert server.requests[0].body["model"] == "gpt-4o-mini"

or the :func:`fault_server` fixture (import it into a test module to use it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    body: Any  # the parsed JSON body (None when there was none or it was not JSON)
    headers: dict[str, str]  # lower-case names
    arrived: float  # time.monotonic() when the request line arrived

    @property
    def text(self) -> str:
        """The prompt: the messages' contents joined by newlines, or the completion prompt."""
        if not isinstance(self.body, dict):
            return ""
        if "messages" in self.body:
            return "\n".join(str(m.get("content", "")) for m in self.body["messages"])
        return str(self.body.get("prompt", ""))

    @property
    def chat(self) -> bool:
        return self.path.endswith("/chat/completions")


@dataclass
class Reply:
    """A good reply's content; the server wraps it in the OpenAI shape of the path asked.

    ``logprobs``: one per token (the text is cut into that many pieces), sent only when the
    request asked for logprobs. Token counts default to word counts.
    """

    text: str
    logprobs: list[float] | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage: bool = True  # False: no usage block at all


@dataclass
class Fault:
    """What goes wrong with one request (or ``times`` requests) that ``when`` accepts."""

    kind: str  # "status", "garbage", "not-openai", "slow", "close"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    when: Callable[[Recorded], bool] = lambda request: True
    times: int = 1

    @classmethod
    def http(cls, status: int, message: str = "scripted failure", *, retry_after: str | None = None,
             **kw: Any) -> Fault:  # fmt: skip
        """An error status with an OpenAI-shaped error body (and ``Retry-After`` if given)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"message": message, "type": "scripted", "code": status}}
        return cls("status", status=status, body=body, headers=headers, **kw)

    @classmethod
    def garbage(cls, text: str = "<html>upstream hiccup</html>", **kw: Any) -> Fault:
        """200 with a body that is not JSON."""
        return cls("garbage", body=text, **kw)

    @classmethod
    def not_openai(cls, body: Any = None, **kw: Any) -> Fault:
        """200 with JSON that is not an OpenAI reply."""
        return cls("not-openai", body=body if body is not None else {"result": "ok"}, **kw)

    @classmethod
    def slow(cls, delay_s: float, **kw: Any) -> Fault:
        """A good reply, ``delay_s`` late (past a client's timeout)."""
        return cls("slow", delay_s=delay_s, **kw)

    @classmethod
    def close(cls, **kw: Any) -> Fault:
        """The connection is closed without a reply."""
        return cls("close", **kw)


def echo(request: Recorded) -> Reply:
    """The default reply: the prompt's last message (or the completion prompt) back."""
    if request.chat and isinstance(request.body, dict) and request.body.get("messages"):
        return Reply(str(request.body["messages"][-1].get("content", "")))
    return Reply(request.text)


class FaultServer:
    """The server; ``base_url`` ends in ``/v1``. Start and stop it with ``with``.

    ``reply``: request -> :class:`Reply` (or a str, or a dict sent as JSON content) for every
    request no fault takes. ``gate``: good replies go out in waves of ``gate`` (each waits
    until its wave has arrived, or ``gate_timeout_s`` passes; send a multiple of ``gate``), so
    a client that keeps ``gate`` requests in flight shows ``max_in_flight == gate`` without
    relying on timing; one that sends them one by one shows 1.
    ``reject_logprobs``: a request asking for logprobs gets a 400 saying so.
    ``models``: what ``GET /v1/models`` lists.
    """

    def __init__(
        self,
        reply: Callable[[Recorded], Reply | str | dict] = echo,
        *,
        gate: int = 0,
        gate_timeout_s: float = 5.0,
        reject_logprobs: bool = False,
        models: tuple[str, ...] = ("gpt-4o-mini",),
    ):
        self.reply, self.gate, self.gate_timeout_s = reply, gate, gate_timeout_s
        self.reject_logprobs, self.models = reject_logprobs, models
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.in_flight = self.max_in_flight = self._gated = 0
        self._lock = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ scripting
    def push(self, *faults: Fault) -> FaultServer:
        with self._lock:
            self.faults.extend(faults)
        return self

    def _take_fault(self, request: Recorded) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.when(request):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def posts(self, path_end: str = "completions") -> list[Recorded]:
        """The recorded POSTs whose path ends with ``path_end``."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(path_end)]

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first (with FaultServer() as s)"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self, "POST")

            def log_message(self, *args: Any) -> None:  # quiet: tests read server.requests
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    # ------------------------------------------------------------------ handling
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        arrived = time.monotonic()
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = Recorded(method, handler.path, body, headers, arrived)
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._lock.notify_all()
        try:
            response = self._respond(request)
        finally:
            with self._lock:  # before the reply is written: the client may send the next at once
                self.in_flight -= 1
        if response is None:
            handler.close_connection = True  # nothing written: the client sees it close
            return
        status, data, extra = response
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _respond(self, request: Recorded) -> tuple[int, bytes, dict[str, str]] | None:
        """(status, body bytes, extra headers), or None to close the connection unanswered."""
        if request.method == "GET":
            if request.path.rstrip("/").endswith("/models"):
                data = [{"id": m, "object": "model", "owned_by": "test"} for m in self.models]
                return _send(200, {"object": "list", "data": data})
            return _send(404, {"error": {"message": f"no route {request.path}"}})
        if not request.path.endswith(("/chat/completions", "/completions")):
            return _send(404, {"error": {"message": f"no route {request.path}"}})
        fault = self._take_fault(request)
        if fault is not None and fault.kind == "close":
            return None
        if fault is not None and fault.kind == "status":
            return _send(fault.status, fault.body, fault.headers)
        if fault is not None and fault.kind == "garbage":
            return _send(200, fault.body, raw=True)
        if fault is not None and fault.kind == "not-openai":
            return _send(200, fault.body)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay_s)
        asked = request.body.get("logprobs") if isinstance(request.body, dict) else None
        asks = asked is True or type(asked) is int  # chat: true; completions: a count (0 too)
        if asks and self.reject_logprobs:
            message = "logprobs are not supported by this model"
            return _send(400, {"error": {"message": message, "param": "logprobs"}})
        self._wait_for_gate()
        return _send(200, self._body(request, asks))

    def _wait_for_gate(self) -> None:
        """Release good replies in waves of ``gate``: the n-th waits for the rest of its wave."""
        if not self.gate:
            return
        deadline = time.monotonic() + self.gate_timeout_s
        with self._lock:
            self._gated += 1
            wave_end = -(-self._gated // self.gate) * self.gate
            self._lock.notify_all()
            while self._gated < wave_end and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())

    def _body(self, request: Recorded, asks_logprobs: bool) -> dict[str, Any]:
        reply = self.reply(request)
        if isinstance(reply, dict):
            reply = Reply(json.dumps(reply))
        elif isinstance(reply, str):
            reply = Reply(reply)
        model = request.body.get("model", "") if isinstance(request.body, dict) else ""
        pieces = _pieces(reply.text, len(reply.logprobs)) if reply.logprobs else []
        if request.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
            if asks_logprobs and reply.logprobs is not None:
                choice["logprobs"] = {"content": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                    for t, lp in zip(pieces, reply.logprobs, strict=True)
                ]}  # fmt: skip
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": reply.text, "finish_reason": reply.finish_reason,
                      "logprobs": None}  # fmt: skip
            if asks_logprobs and reply.logprobs is not None:
                offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
                choice["logprobs"] = {"tokens": pieces, "token_logprobs": reply.logprobs,
                                      "top_logprobs": None, "text_offset": offsets}  # fmt: skip
            kind = "text_completion"
        body: dict[str, Any] = {"id": f"scripted-{len(self.requests)}", "object": kind,
                                "created": int(time.time()), "model": model,
                                "choices": [choice]}  # fmt: skip
        if reply.usage:
            prompt = reply.prompt_tokens
            completion = reply.completion_tokens
            prompt = len(request.text.split()) if prompt is None else prompt
            completion = len(reply.text.split()) if completion is None else completion
            body["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}  # fmt: skip
        return body


def _pieces(text: str, n: int) -> list[str]:
    """``text`` cut into ``n`` consecutive pieces (the last ones empty when it is short)."""
    size = max(1, -(-len(text) // n)) if text else 1
    return [text[i * size : (i + 1) * size] for i in range(n)]


def _send(
    status: int, body: Any, headers: dict[str, str] | None = None, *, raw: bool = False
) -> tuple[int, bytes, dict[str, str]]:
    """A response: ``body`` as JSON, or as it is with ``raw``."""
    return status, str(body).encode() if raw else json.dumps(body).encode(), dict(headers or {})


@pytest.fixture
def fault_server():
    """A started :class:`FaultServer` with the echo reply; script it in the test."""
    with FaultServer() as server:
        yield server
