"""Any OpenAI-compatible HTTP endpoint as a :class:`~slm_agents.models.base.TextGenerator`.

Why: the LLM tier of a team is often a hosted model (OpenAI, a vLLM or Ray Serve LLM server, a
gateway). ``OpenAIEndpoint`` gives agents the same ``generate`` as ``CausalLM`` over that API:
chat messages or plain text (``chat=False``: ``/v1/completions``), JSON schemas (sent as
``response_format`` and checked again here), LoRA adapters by name (the model id
``"{model}:{adapter}"``, the Ray Serve LLM convention), usage and finish reason per request.

- **Batches** run concurrently, at most ``max_concurrency`` requests in flight per endpoint
  (one thread pool shared by every caller). The calls are blocking in worker threads, so
  ``generate`` works the same from plain code, a Jupyter cell or an async server.
- **Retries** are ours (the openai client's own are off): connection errors, timeouts, 429, 408
  and 5xx are retried up to ``max_retries`` times with exponential backoff and jitter, or after
  the server's ``Retry-After`` (seconds or an HTTP date; capped at ``max_retry_after_s``).
  Other 4xx fail at once. A request that fails for good, or whose reply is not an OpenAI reply,
  becomes that request's error Generation; the rest of the batch completes.
- **Confidence** is ``exp(mean of the finite token logprobs)``, the formula of ``CausalLM``,
  when the reply carries logprobs (they are asked for). When it does not, ``confidence`` is
  None: no confidence is available, and none is invented. A server that rejects ``logprobs``
  with a 400 naming them gets that request again without, and is not asked for them again.
- **The API key** is read from the environment variable ``api_key_env`` once, here; it is sent
  only as the bearer header and never appears in ``repr``, ``describe()``, errors or logs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from slm_agents import tracking
from slm_agents.models.base import (
    Generation,
    InputError,
    Messages,
    Model,
    Timer,
    Usage,
    mean_confidence,
    run_isolated,
)
from slm_agents.models.constraints import Constraint, make_constraint, parse_output
from slm_agents.models.hf import GenerationOptions
from slm_agents.tracking.failures import mask_secrets

log = logging.getLogger(__name__)

OPTIONS = ("max_new_tokens", "temperature", "top_p", "seed", "stop", "chat", "json_schema",
           "adapter", "regex")  # fmt: skip
NO_KEY = "no-key"  # sent when no api_key_env is given: local servers need no key
MAX_SENT_STOPS = 4  # the OpenAI API takes at most four; every stop string is applied here too
_RETRIED_STATUS = {408, 429}


class BadReply(ValueError):
    """The server answered 200 with something that is not the reply asked for."""


@dataclass
class _Prepared:
    """One checked request: chat messages (or plain text for completions) and its prefill."""

    messages: Messages | None
    text: str | None
    prefill: str
    constraint: Constraint | None


class OpenAIEndpoint(Model):
    """An OpenAI-compatible endpoint (``base_url`` ends in ``/v1``) serving ``model``.

    Args:
        base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
        model: the model id the server knows; ``adapter=`` selects ``"{model}:{adapter}"``.
        api_key_env: the environment variable holding the API key (read now; an unset variable
            is an error naming it). None sends a placeholder key: local servers need none, and
            no key from the environment goes to a server it was not meant for.
        name: what Steps and the price table call it (default: ``model``).
        max_concurrency: requests in flight at once, over every caller of this endpoint.
        timeout_s: per request attempt. max_retries: attempts after the first.
        backoff_s, max_backoff_s: the first retry waits about ``backoff_s``, each next one
            twice as long (with jitter), never more than ``max_backoff_s``.
        max_retry_after_s: the longest ``Retry-After`` honoured.
        extra_body: extra JSON fields sent with every request (a server's own settings, e.g.
            vLLM's ``{"continue_final_message": true, "add_generation_prompt": false}``).
    """

    kind = "causal"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        name: str | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        max_retry_after_s: float = 60.0,
        extra_body: dict[str, Any] | None = None,
    ):
        from openai import OpenAI

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty model id, got {model!r}")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self.base_url, self.model, self.name = base_url.rstrip("/"), model, name or model
        self.api_key_env, self.max_concurrency = api_key_env, max_concurrency
        self.timeout_s, self.max_retries = float(timeout_s), max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_retry_after_s, self.extra_body = max_retry_after_s, dict(extra_body or {})
        self._key = self._read_key(api_key_env)
        self._client = OpenAI(
            base_url=self.base_url, api_key=self._key, max_retries=0, timeout=self.timeout_s
        )
        self._logprobs = True  # False once the server rejected them (see the module docstring)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    @staticmethod
    def _read_key(variable: str | None) -> str:
        if variable is None:
            return NO_KEY
        value = os.environ.get(variable)
        if not value:
            raise ValueError(
                f"the environment variable {variable} (api_key_env) is not set or empty; "
                f"export {variable}=... with the endpoint's API key"
            )
        return value

    def __repr__(self) -> str:
        return (
            f"OpenAIEndpoint(base_url={mask_secrets(self.base_url)!r}, model={self.model!r}, "
            f"name={self.name!r})"
        )

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[str | Messages], **options: Any) -> list[Generation]:
        """One Generation per prompt, in order; see :class:`TextGenerator` for the options.

        ``regex`` cannot be expressed over the OpenAI API and raises; an option this backend
        does not know raises naming it.
        """
        if isinstance(prompts, str):
            raise TypeError("generate takes a list of prompts; wrap a single prompt in [ ]")
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise TypeError(f"{self.name}: unknown generate options {unknown}; known: {OPTIONS}")
        if options.get("regex") is not None:
            raise ValueError(
                f"{self.name}: regex= is not expressible over the OpenAI API (it offers JSON "
                "schemas, not regular expressions); use json_schema=, or a local CausalLM"
            )
        schema = options.pop("json_schema", None)
        options.pop("regex", None)
        opts = GenerationOptions(**options)
        try:
            constraint, schema_error = make_constraint(schema), None
            if constraint is not None:
                _check_schema(json.loads(constraint.json_schema))
        except InputError as exc:
            constraint, schema_error = None, exc
        sent_schema = json.loads(constraint.json_schema) if constraint else None
        shown = {**asdict(opts), "json_schema": sent_schema}  # what the span records

        def prepare(prompt: Any) -> _Prepared:
            if schema_error is not None:
                raise schema_error
            return self._prepare(prompt, opts.chat, constraint)

        with tracking.model_call(self.name, "generate", list(prompts), shown) as span:
            results = run_isolated(
                list(prompts),
                prepare,
                lambda ready: list(self._executor().map(lambda p: self._one(p, opts), ready)),
                lambda msg: Generation(error=msg),
            )
            span.record(results)
        return results

    def _prepare(self, prompt: Any, chat: bool, constraint: Constraint | None) -> _Prepared:
        if isinstance(prompt, bytes):
            raise InputError("prompt is bytes; decode it to str first (which encoding?)")
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InputError("prompt is empty")
            if not chat:
                return _Prepared(None, prompt, "", constraint)
            return _Prepared([{"role": "user", "content": prompt}], None, "", constraint)
        if not chat:
            raise InputError("chat=False takes plain-text prompts, not chat messages")
        if not isinstance(prompt, list) or not prompt:
            raise InputError(f"prompt must be a str or a list of chat messages, got {type(prompt)}")
        for message in prompt:
            if not (isinstance(message, dict) and {"role", "content"} <= message.keys()):
                raise InputError(f"chat message must be a dict with role and content: {message!r}")
        if not any(str(m["content"]).strip() for m in prompt):
            raise InputError("prompt is empty")
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
        prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        return _Prepared(messages, None, prefill, constraint)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix=self.name)
            return self._pool

    def _one(self, request: _Prepared, opts: GenerationOptions) -> Generation:
        with Timer() as timer:
            gen = self._with_retries(request, opts)
        gen.latency_s = timer.seconds
        return gen

    def _with_retries(self, request: _Prepared, opts: GenerationOptions) -> Generation:
        import openai

        attempt, dropped_logprobs = 0, False
        while True:
            logprobs = self._logprobs
            try:
                return self._reply(request, opts, self._post(request, opts, logprobs))
            except BadReply as exc:
                return Generation(error=self._clean(f"{self._url(request)}: {exc}"))
            except openai.APIStatusError as exc:
                rejected = exc.status_code == 400 and _rejects_logprobs(exc)
                if rejected and logprobs and not dropped_logprobs:
                    self._logprobs, dropped_logprobs = False, True
                    continue  # the same request once more, without logprobs
                retried = exc.status_code in _RETRIED_STATUS or exc.status_code >= 500
                why = f"HTTP {exc.status_code}: {_server_message(exc)}"
                wait = _retry_after_s(exc.response.headers)
            except openai.APITimeoutError:
                retried, why, wait = True, f"no reply within {self.timeout_s:g} s", None
            except openai.APIConnectionError as exc:
                retried, why, wait = True, f"connection failed: {_cause(exc)}", None
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # a 200 whose parts have unexpected types (logprobs as a string, ...): this
                # prompt's error, never the batch's
                why = f"the reply has an unexpected shape ({type(exc).__name__}: {exc})"
                return Generation(error=self._clean(f"{self._url(request)}: {why}"))
            if not retried or attempt >= self.max_retries:
                tries = f"after {attempt + 1} attempts" if attempt else "(not retried)"
                return Generation(error=self._clean(f"{self._url(request)} {tries}: {why}"))
            delay = self._delay(attempt, wait)
            log.info("%s: %s; retry %d in %.2f s", self.name, self._clean(why), attempt + 1, delay)
            time.sleep(delay)
            attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """The server's Retry-After (capped) plus a little jitter, else exponential backoff."""
        if retry_after is not None:
            wait = min(retry_after, self.max_retry_after_s)
            return wait + random.uniform(0, 0.1 * wait)
        return min(self.max_backoff_s, self.backoff_s * 2**attempt * random.uniform(1.0, 1.5))

    def _post(self, request: _Prepared, opts: GenerationOptions, logprobs: bool) -> Any:
        body: dict[str, Any] = {
            "model": self._model_id(opts.adapter),
            "max_tokens": opts.max_new_tokens,
            "temperature": opts.temperature,
        }
        if opts.top_p < 1.0:
            body["top_p"] = opts.top_p
        if opts.seed is not None:
            body["seed"] = opts.seed
        if opts.stop:
            body["stop"] = list(opts.stop[:MAX_SENT_STOPS])
        extra = dict(self.extra_body) or None
        if request.messages is None:
            if logprobs:
                body["logprobs"] = 0  # completions: the chosen tokens' logprobs, no alternatives
            return self._client.completions.with_raw_response.create(
                prompt=request.text, extra_body=extra, **body
            )
        if logprobs:
            body["logprobs"] = True
        if request.constraint is not None:
            schema = json.loads(request.constraint.json_schema)
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": _schema_name(schema),
                    "schema": schema,
                    # OpenAI refuses strict mode for schemas outside its subset (optional
                    # properties, open objects); the reply is validated here either way
                    "strict": _strict_subset(schema),
                },
            }
        return self._client.chat.completions.with_raw_response.create(
            messages=request.messages, extra_body=extra, **body
        )

    def _model_id(self, adapter: str | None) -> str:
        return f"{self.model}:{adapter}" if adapter else self.model

    def _url(self, request: _Prepared) -> str:
        path = "/completions" if request.messages is None else "/chat/completions"
        return f"{mask_secrets(self.base_url)}{path}"

    def _reply(self, request: _Prepared, opts: GenerationOptions, raw: Any) -> Generation:
        """The Generation a 200 reply holds; a reply of the wrong shape raises BadReply."""
        text_body = raw.text
        try:
            body = json.loads(text_body)
        except ValueError as exc:
            raise BadReply(f"the reply is not JSON ({exc}): {text_body[:200]!r}") from exc
        choice = _first_choice(body)
        if request.messages is None:
            text, lps = choice.get("text"), (choice.get("logprobs") or {}).get("token_logprobs")
            where = "choices[0].text"
        else:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            content = (choice.get("logprobs") or {}).get("content")
            lps = [t.get("logprob") for t in content if isinstance(t, dict)] if content else None
            where = "choices[0].message.content"
            if text is None and isinstance(message, dict) and message.get("refusal"):
                raise BadReply(f"the model refused: {str(message['refusal'])[:200]}")
        if not isinstance(text, str):
            raise BadReply(f"the reply is JSON but has no {where} (got {str(body)[:200]})")
        if request.prefill and text.startswith(request.prefill):
            text = text[len(request.prefill) :]  # a server that repeats the prefill
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        cut = min((text.find(s) for s in opts.stop if s in text), default=-1)
        if cut >= 0:  # stops beyond the four sent, or a server that ignores stop
            text, reason = text[:cut], "stop"
        token_logprobs = [float(lp) if isinstance(lp, int | float) else -math.inf
                          for lp in lps or []]  # fmt: skip
        gen = Generation(
            text=text,
            token_logprobs=token_logprobs,
            confidence=mean_confidence(token_logprobs) if lps else None,
            usage=_usage(body.get("usage"), len(token_logprobs)),
            finish_reason=reason,
        )
        if request.constraint is not None:
            self._parse(gen, request.constraint, opts)
        return gen

    @staticmethod
    def _parse(gen: Generation, constraint: Constraint, opts: GenerationOptions) -> None:
        """Check the reply against the schema here too: a server may ignore response_format."""
        n = gen.usage.completion_tokens
        if gen.finish_reason == "length":
            gen.error = (
                f"output is not complete (length after {n} tokens); raise max_new_tokens "
                f"(now {opts.max_new_tokens})"
            )
            return
        try:
            value = json.loads(gen.text)
        except ValueError as exc:
            gen.error = f"the reply is not valid JSON ({exc}): {gen.text[:200]!r}"
            return
        problems = _schema_problems(json.loads(constraint.json_schema), value)
        if problems:
            gen.error = f"the reply does not match the schema: {problems}"
            return
        try:
            gen.parsed = parse_output(gen.text, constraint)
        except ValueError as exc:  # pydantic's ValidationError: a validator the schema lacks
            gen.error = f"the reply does not match {constraint.pydantic_model.__name__}: {exc}"

    def _clean(self, text: str) -> str:
        """``text`` with the API key (and any other credential) masked."""
        if self._key != NO_KEY:
            text = text.replace(self._key, "***")
        return mask_secrets(text)

    # ------------------------------------------------------------------ info
    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "endpoint_model": self.model,
            "base_url": mask_secrets(self.base_url),
            "api_key_env": self.api_key_env or "none",
            "max_concurrency": self.max_concurrency,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "logprobs": self._logprobs,
        }

    def close(self) -> None:
        """Stop the worker threads and close the HTTP connections."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self._client.close()


# ---------------------------------------------------------------------- reply helpers
def _rejects_logprobs(exc: Any) -> bool:
    """A 400 about the logprobs parameter itself (its ``param``, or a message that starts with
    it), not any 400 whose text happens to mention log-probabilities."""
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    param = str(error.get("param") or "") if isinstance(error, dict) else ""
    if param:
        return "logprob" in param.lower()
    return _server_message(exc).lower().lstrip("'\"`").startswith(("logprob", "top_logprob"))


def _strict_subset(schema: Any) -> bool:
    """Whether OpenAI's strict structured outputs accept ``schema``: every object closed
    (``additionalProperties: false``) with every property required, all the way down."""
    if isinstance(schema, list):
        return all(_strict_subset(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", [])) != set(properties):
            return False
    return all(_strict_subset(value) for key, value in schema.items() if key != "enum")


def _first_choice(body: Any) -> dict[str, Any]:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadReply(
            f"the reply is JSON but not an OpenAI reply: no choices[0] in {str(body)[:200]}"
        )
    return choices[0]


def _usage(usage: Any, n_logprobs: int) -> Usage:
    if not isinstance(usage, dict):
        return Usage(0, n_logprobs)
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return Usage(
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else n_logprobs,
    )


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InputError(f"invalid JSON schema: {exc.message}") from exc


def _schema_problems(schema: dict[str, Any], value: Any) -> str:
    """Every way ``value`` breaks ``schema``, each at the field it concerns; '' when none."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [
        f"at {'.'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}"
        for e in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    ]
    return "; ".join(problems)


def _schema_name(schema: dict[str, Any]) -> str:
    """The ``json_schema.name`` OpenAI asks for: letters, digits, ``_`` and ``-``, 64 at most."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "output")).strip("_")
    return (name or "output")[:64]


# ---------------------------------------------------------------------- error helpers
def _server_message(exc: Any) -> str:
    """What the server said about a failed request: its ``error.message``, else the body."""
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:300]
    text = exc.response.text if exc.response is not None else ""
    return (text or str(body or exc.message))[:300]


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(exc)


def _retry_after_s(headers: Any) -> float | None:
    """Seconds a server asked to wait (``Retry-After``: seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = ["BadReply", "OpenAIEndpoint"]
