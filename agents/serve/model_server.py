"""One Ray Serve replica of one causal model: batched requests, LoRA adapters in a per-replica LRU.

Requests that arrive together run as one ``CausalLM.generate`` call, even when they ask for
different adapters: rows carry their own adapter (PEFT's mixed-adapter batches), so
one copy of the base weights serves many adapters without taking turns. Adapters load on first
use through ``serve.multiplexed``'s per-replica LRU; the least recently used one is unloaded
past ``max_adapters_per_replica``. Requests do not carry Serve's ``multiplexed_model_id``
(Serve's batching would split batches by it), so any replica takes any adapter's requests.

Batches form when the model is free (``slm_agents.runtime.batching.DynamicBatcher``: the
queued requests, plus those it expects back within ``wait_s``), not with ``serve.batch``, which
forms the next batch while the current one runs: closed-loop clients then split into cohorts that
take turns in smaller batches (a short run of ``benchmarks/serve.py`` at 16 clients: mean
batch 8.8; with this batcher, 16).

The replica speaks in plain dicts (a *job* in, an *answer* out, see :func:`job_from`) so nothing
but builtins crosses the process boundary; input problems come back as ``{"error": {...}}`` with
the HTTP status the ingress should send.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from slm_agents.models.base import Generation
from slm_agents.runtime.batching import DynamicBatcher

OPTION_KEYS = ("chat", "max_new_tokens", "temperature", "top_p", "seed", "stop", "top_logprobs")
_END = object()


def input_error(message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"status": 400, "message": message, "param": param}}


def adapter_failed(model_id: str, adapter: str, exc: Exception) -> dict[str, Any]:
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return {
        "error": {
            "status": 500,
            "type": "server_error",
            "message": f"adapter {model_id}:{adapter} failed to load: "
            f"{type(exc).__name__}: {reason}",
        }
    }


def _param_of(message: str) -> str:
    """Which request field an input error is about, for the OpenAI ``param``."""
    lowered = message.lower()
    if "schema" in lowered or "regex" in lowered:
        return "response_format"
    if "context" in lowered or "max_new_tokens" in lowered:
        return "max_tokens"
    for option in ("temperature", "top_p", "stop", "seed"):
        if option in lowered:
            return option
    return "messages"


class _ResidentAdapter:
    """An adapter in the LRU; Serve calls ``__del__`` when it evicts it (at most once here)."""

    def __init__(self, server: ModelServer, name: str):
        self.server, self.name, self.released = server, name, False

    def __del__(self) -> None:
        if not self.released:
            self.released = True
            self.server._unload(self.name)


class _AllSet:
    """Set once every job of a batch is cancelled: only then may its decoding stop."""

    def __init__(self, events: list[threading.Event]):
        self.events = events

    def is_set(self) -> bool:
        return all(event.is_set() for event in self.events)


class ModelServer:
    """The deployment class; ``slm_agents.serve.app`` wraps it with ``serve.deployment``."""

    def __init__(self, entry: dict[str, Any], adapters: dict[str, str], threads: int):
        from slm_agents.models import CausalLM
        from slm_agents.runtime.worker import prepare_worker

        prepare_worker(threads)
        self.model_id = entry["id"] or entry["model"]
        self.lm = CausalLM(
            entry["model"],
            device=entry["device"],
            quantize=entry["quantize"],
            batch_size=entry["deployment"]["batch"]["max_batch_size"],
        )
        self.adapter_paths = dict(adapters)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")
        self._adapters_lock = threading.Lock()  # loading, unloading, and batches that use them
        self._resident: set[str] = set()
        batch = entry["deployment"]["batch"]
        self._batcher = DynamicBatcher(self._run_batch, batch["max_batch_size"], batch["wait_s"])

        async def load(name: str) -> _ResidentAdapter:  # a function: Serve keeps state on it
            return await self._load_resident(name)

        lru_size = entry["max_adapters_per_replica"]
        self._load = serve.multiplexed(max_num_models_per_replica=lru_size)(load)

    # ------------------------------------------------------------------ adapters
    async def _load_resident(self, name: str) -> _ResidentAdapter:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._load_now, name)
        return _ResidentAdapter(self, name)

    def _load_now(self, name: str) -> None:
        with self._adapters_lock:
            self._ensure_loaded(name)
            self._resident.add(name)  # under the lock: a finishing batch must see it resident

    def _ensure_loaded(self, name: str) -> None:
        """Load ``name`` if it is not (first use, or evicted while its request waited); the
        caller holds ``_adapters_lock``."""
        if name not in self.lm.adapters:
            self.lm.load_adapter(self.adapter_paths[name], name)

    def _drop_unless_resident(self, names: set[str]) -> None:
        """Unload adapters a batch or stream reloaded that the LRU no longer holds; the caller
        holds ``_adapters_lock``."""
        for name in names - self._resident:
            if name in self.lm.adapters:
                self.lm.unload_adapter(name)

    def _unload(self, name: str) -> None:
        with self._adapters_lock:
            self._resident.discard(name)
            if name in self.lm.adapters:
                self.lm.unload_adapter(name)

    # ------------------------------------------------------------------ requests
    def _check(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The input error of a job (400, naming the field), or None when it can run."""
        from slm_agents.models.hf import GenerationOptions, Request

        adapter = job.get("adapter")
        if adapter is not None and adapter not in self.adapter_paths:
            return {
                "error": {
                    "status": 404,
                    "message": f"model {self.model_id}:{adapter} does not exist; adapters of "
                    f"{self.model_id}: {sorted(self.adapter_paths)}",
                    "param": "model",
                    "code": "model_not_found",
                }
            }
        try:
            options = GenerationOptions(**{k: job[k] for k in OPTION_KEYS})
            self.lm.check(Request(job["prompt"], json_schema=job.get("json_schema")), options)
        except ValueError as exc:  # InputError, or GenerationOptions naming the bad option
            return input_error(str(exc), _param_of(str(exc)))
        return None

    async def _adapter_ready(self, adapter: str | None) -> dict[str, Any] | None:
        """Load the job's adapter into the LRU; an adapter that fails to load is that
        request's error (a broken adapter folder is the server's fault: 500, named)."""
        if not adapter:
            return None
        try:
            await self._load(adapter)
        except Exception as exc:
            return adapter_failed(self.model_id, adapter, exc)
        return None

    async def generate(self, job: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        problem = await loop.run_in_executor(None, self._check, job)  # waits for the model lock
        if problem is not None:
            return problem
        problem = await self._adapter_ready(job.get("adapter"))
        if problem is not None:
            return problem
        cancel = threading.Event()
        try:
            return await self._batcher.submit(job | {"cancel": cancel})
        except asyncio.CancelledError:  # the ingress gave up (timeout) or the client left
            cancel.set()
            raise

    async def _run_batch(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_jobs, jobs)

    def _run_jobs(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Jobs with the same decoding settings share one generate call, whatever adapters."""
        from slm_agents.models.hf import Request

        groups: dict[str, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(json.dumps([job[k] for k in OPTION_KEYS]), []).append(i)
        answers: list[dict[str, Any] | None] = [None] * len(jobs)
        with self._adapters_lock:
            needed = {job["adapter"] for job in jobs if job.get("adapter")}
            for name in sorted(needed):  # evicted while the job waited: load it again
                try:
                    self._ensure_loaded(name)
                except Exception as exc:
                    failed = adapter_failed(self.model_id, name, exc)
                    for i, job in enumerate(jobs):
                        if job.get("adapter") == name:
                            answers[i] = failed
            groups = {key: [i for i in rows if answers[i] is None] for key, rows in groups.items()}
            try:
                for rows in (rows for rows in groups.values() if rows):
                    first = jobs[rows[0]]
                    requests = [
                        Request(
                            jobs[i]["prompt"],
                            json_schema=jobs[i].get("json_schema"),
                            adapter=jobs[i].get("adapter"),
                        )
                        for i in rows
                    ]
                    cancel = _AllSet([jobs[i]["cancel"] for i in rows])
                    options = {k: first[k] for k in OPTION_KEYS}
                    started = time.perf_counter()
                    gens = self.lm.generate(requests, cancel=cancel, **options)
                    batch = {  # what shared this forward pass, for clients and the benchmark
                        "batch_size": len(rows),
                        "batch_adapters": sorted({jobs[i].get("adapter") or "" for i in rows}),
                        "batch_seconds": round(time.perf_counter() - started, 3),
                    }
                    for i, gen in zip(rows, gens, strict=True):
                        answers[i] = self.answer(gen, jobs[i]) | {"batch": batch}
            finally:
                self._drop_unless_resident(needed)
        return answers  # type: ignore[return-value]

    async def stream(self, job: dict[str, Any]):
        """Text deltas as ``{"delta": str}``, then ``{"final": answer}`` (or one error)."""
        from slm_agents.models.hf import GenerationOptions, Request

        loop = asyncio.get_running_loop()
        problem = await loop.run_in_executor(None, self._check, job)
        if problem is not None:
            yield problem
            return
        problem = await self._adapter_ready(job.get("adapter"))
        if problem is not None:
            yield problem
            return
        adapter = job.get("adapter")
        request = Request(job["prompt"], json_schema=job.get("json_schema"), adapter=adapter)
        options = GenerationOptions(**{k: job[k] for k in OPTION_KEYS})
        # One thread per stream: the stream holds the model lock between pieces, so it must
        # not share the batches' thread.
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream")
        pieces = self.lm.stream(request, options)

        def first_piece() -> Any:
            """The first piece under the adapter lock: once decoding holds the model lock, no
            eviction can take the adapter away; one evicted meanwhile is loaded again."""
            with self._adapters_lock:
                try:
                    if adapter:
                        self._ensure_loaded(adapter)
                except Exception as exc:
                    return adapter_failed(self.model_id, adapter, exc)
                return next(pieces, _END)

        try:
            piece = await loop.run_in_executor(worker, first_piece)
            if isinstance(piece, dict):  # the adapter failed to load
                yield piece
                return
            while True:
                if piece is _END:
                    return
                if isinstance(piece, Generation):
                    answer = self.answer(piece, job)
                    yield answer if "error" in answer else {"final": answer}
                else:
                    yield {"delta": piece}
                piece = await loop.run_in_executor(worker, next, pieces, _END)
        finally:
            await loop.run_in_executor(worker, pieces.close)
            worker.shutdown(wait=False)
            if adapter:
                with self._adapters_lock:
                    self._drop_unless_resident({adapter})

    def answer(self, gen: Generation, job: dict[str, Any]) -> dict[str, Any]:
        """The wire answer of one Generation. An incomplete JSON reply (out of tokens) is
        returned as generated with ``finish_reason: length``, as OpenAI does."""
        if not gen.ok and gen.finish_reason == "error":
            return {"error": {"status": 500, "message": gen.error, "type": "server_error"}}
        tokens = top = None
        if job.get("logprobs"):
            decode = self.lm.tokenizer.decode
            tokens = [
                (decode([tid]), lp)
                for tid, lp in zip(gen.token_ids, gen.token_logprobs, strict=True)
            ]
            if gen.top_logprobs:
                top = [[(decode([tid]), lp) for tid, lp in step] for step in gen.top_logprobs]
        return {
            "text": gen.text,
            "finish_reason": gen.finish_reason,
            "prompt_tokens": gen.usage.prompt_tokens,
            "completion_tokens": gen.usage.completion_tokens,
            "confidence": gen.confidence,
            "tokens": tokens,
            "top_logprobs": top,
        }
