"""Causal language models through transformers: chat, batching, logprobs, constraints, LoRA.

One ``CausalLM`` wraps one base model. ``generate`` takes a list of prompts and returns one
:class:`Generation` per prompt, in order; a bad prompt gets an error result and the rest of the
batch still runs. Confidence is ``exp(mean token logprob)``, the geometric mean of the
probabilities of the tokens the decoder chose (after constraints); see ``docs/models.md``.

Requests for different LoRA adapters share one forward pass (PEFT's mixed-adapter batches), and
``stream`` yields one prompt's text as it is decoded, ending with the same ``Generation``.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from slm_agents import tracking
from slm_agents.models.base import (
    Generation,
    InputError,
    Model,
    Timer,
    Usage,
    mean_confidence,
    pick_device,
    quantize_int8,
    run_isolated,
)
from slm_agents.models.constraints import Constraint, GrammarCompiler, make_constraint, parse_output
from slm_agents.models.sources import DEFAULT_CAUSAL, ensure_converted, resolve

Messages = list[dict[str, str]]
BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


@dataclass
class GenerationOptions:
    """Decoding settings shared by a batch. ``temperature=0`` means greedy."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    adapter: str | None = None  # LoRA adapter to use; None means the base model
    chat: bool = True  # False: plain-string prompts go in as they are (completion, base models)
    top_logprobs: int = 0  # per token, also the k most likely alternatives (Generation field)

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = (self.stop,)
        self.stop = tuple(self.stop)
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")
        if not isinstance(self.top_logprobs, int) or not 0 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be an int in [0, 20], got {self.top_logprobs!r}")


@dataclass
class Request:
    """One prompt with its own output constraint (a JSON schema or a regex) and adapter.

    ``adapter`` names a loaded LoRA adapter for this prompt alone (None: the batch's
    ``GenerationOptions.adapter``); requests for different adapters still share one batch.
    """

    prompt: str | Messages
    json_schema: Any = None  # dict, JSON text, or a pydantic model class
    regex: str | None = None
    adapter: str | None = None


@dataclass
class _Prepared:
    text: str
    n_tokens: int
    constraint: Constraint | None
    grammar: Any = field(default=None, repr=False)
    adapter: str | None = None


class CausalLM(Model):
    """A transformers causal LM, loaded from a local path, a bundled package or the hub.

    Args:
        model: bundled name, local folder or ``.gguf`` file, or Hugging Face id.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available).
        quantize: ``"int8"`` for torch dynamic int8 quantization of Linear layers (CPU only).
        batch_size: prompts per forward pass; longer lists are split.
        options: default :class:`GenerationOptions`; ``generate`` keywords override them.
    """

    kind = "causal"

    def __init__(
        self,
        model: str = DEFAULT_CAUSAL,
        *,
        device: str = "auto",
        quantize: str | None = None,
        batch_size: int = 16,
        options: GenerationOptions | None = None,
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.device = pick_device(device)
        if quantize and self.device != "cpu":
            raise ValueError("quantize='int8' is torch dynamic quantization and runs on CPU only")
        self.resolved = resolve(model)
        location = self.resolved.location
        if self.resolved.gguf_file:
            location = str(ensure_converted(self.resolved))
        self.name = self.resolved.name
        self.tokenizer = AutoTokenizer.from_pretrained(location)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(location).to(self.device).eval()
        if quantize == "int8":
            self.model = quantize_int8(self.model)
        self.quantize = quantize
        self.batch_size = batch_size
        self.options = options or GenerationOptions()
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self._grammars: GrammarCompiler | None = None
        self._lock = threading.Lock()  # agents sharing this model call it one at a time
        self._check_lock = threading.Lock()  # check() counts tokens on its own tokenizer
        self._check_tokenizer: Any = None

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        prompts: Sequence[str | Messages | Request],
        options: GenerationOptions | None = None,
        *,
        progress: bool = False,
        cancel: Any = None,
        **overrides: Any,
    ) -> list[Generation]:
        """Generate for each prompt. Plain strings are wrapped as one user chat message (sent
        as they are with ``chat=False`` or when the model has no chat template: completion, for
        base models); a chat whose last message is the assistant's is a prefill: the model
        continues that message (its text is not repeated in ``Generation.text``).

        Keyword overrides (``max_new_tokens=32``, ``json_schema=...``, ``regex=...``) apply to
        the whole batch; a :class:`Request` carries its own constraint and adapter. Requests
        for different adapters run in one forward pass; an unknown ``Request.adapter`` is that
        request's error, an unknown ``adapter=`` option a ``ValueError`` for the call.

        ``cancel``: once this event (anything with ``is_set()``) is set, decoding stops at the
        next token (a server whose clients all went away); replies end there ("length").
        """
        if isinstance(prompts, (str, Request)):
            raise TypeError("generate takes a list of prompts; wrap a single prompt in [ ]")
        prompts, opts = self._with_options(list(prompts), options, overrides)
        hooks: dict[str, Any] = {}
        if cancel is not None:
            from transformers import StoppingCriteriaList

            from slm_agents.models.streaming import CancelFlag

            hooks["stopping_criteria"] = StoppingCriteriaList([CancelFlag(cancel)])
        with self._lock:
            return self._generate_locked(prompts, opts, progress, hooks=hooks)

    def stream(
        self,
        prompt: str | Messages | Request,
        options: GenerationOptions | None = None,
        **overrides: Any,
    ) -> Iterator[str | Generation]:
        """Generate for ONE prompt, yielding text deltas (``str``) as tokens are decoded and,
        last, the complete :class:`Generation`, the one ``generate([prompt])`` returns.

        ``"".join(deltas) == final.text``: text a stop string would cut, or that may still be
        part of one, is held back until it is certain. A bad prompt yields only the error
        Generation. Options are checked here (a bad one raises now); generation starts at the
        first ``next()``.

        The model lock is held from the first ``next()`` until the final item, so other calls
        on this model wait while a consumer reads slowly, and the consumer must not call this
        model itself in between (it would wait for itself). Closing the generator early
        (``close()``, ``break`` in a for loop, garbage collection) stops decoding at the next
        token and releases the lock.
        """
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], dict):
            raise TypeError("stream takes one prompt; use generate for a list of prompts")
        [request], opts = self._with_options([prompt], options, overrides)
        problem = self._adapter_problem(opts.adapter)  # checked again once the lock is held
        if problem:
            raise ValueError(problem)
        return self._stream(request, opts)

    def _stream(self, request: Any, opts: GenerationOptions) -> Iterator[str | Generation]:
        from transformers import StoppingCriteriaList

        from slm_agents.models.streaming import CancelFlag, TextDeltas

        events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        cancelled = threading.Event()
        hooks = {
            "streamer": TextDeltas(
                self.tokenizer, opts.stop, self._eos_ids, lambda d: events.put(("delta", d))
            ),
            "stopping_criteria": StoppingCriteriaList([CancelFlag(cancelled)]),
        }

        def work() -> None:
            try:
                [final] = self._generate_locked([request], opts, hooks=hooks, operation="stream")
                events.put(("done", final))
            except BaseException as exc:  # a bug or an unknown adapter= option: the caller's
                events.put(("failed", exc))

        # The worker runs in a copy of the caller's context: its span nests under the caller's
        # current span and never stays open in the caller's context between yields.
        context = contextvars.copy_context()
        with self._lock:
            worker = threading.Thread(target=context.run, args=(work,), daemon=True)
            worker.start()
            try:
                emitted = ""
                while True:
                    kind, value = events.get()
                    if kind == "failed":
                        raise value
                    if kind == "done":
                        break
                    emitted += value
                    yield value
                if value.text.startswith(emitted) and len(value.text) > len(emitted):
                    yield value.text[len(emitted) :]  # what was held back for stop strings
                yield value
            finally:
                cancelled.set()
                worker.join()

    def _with_options(
        self, prompts: list[Any], options: GenerationOptions | None, overrides: dict[str, Any]
    ) -> tuple[list[Any], GenerationOptions]:
        schema, regex = overrides.pop("json_schema", None), overrides.pop("regex", None)
        opts = replace(options or self.options, **overrides)
        if schema is not None or regex is not None:
            prompts = [
                p if isinstance(p, Request) else Request(p, json_schema=schema, regex=regex)
                for p in prompts
            ]
        return prompts, opts

    def _generate_locked(
        self,
        prompts: list[Any],
        opts: GenerationOptions,
        progress: bool = False,
        hooks: dict[str, Any] | None = None,
        operation: str = "generate",
    ) -> list[Generation]:
        """``generate``'s body; the caller holds the lock. ``hooks`` go to ``model.generate``."""
        problem = self._adapter_problem(opts.adapter)
        if problem:
            raise ValueError(problem)
        with tracking.model_call(self.name, operation, prompts, asdict(opts)) as span:
            results = run_isolated(
                prompts,
                lambda p: self._prepare(p, opts),
                lambda ready: self._run_chunks(ready, opts, progress, hooks or {}),
                lambda msg: Generation(error=msg),
            )
            span.record(results)
        return results

    def check(self, prompt: str | Messages | Request, options: GenerationOptions) -> int:
        """Raise :class:`InputError` (naming the problem) if ``generate`` would refuse this
        prompt: empty, too long for the context with ``max_new_tokens``, a schema that does not
        compile. Returns its token count. A server answers 400 from this before queueing.

        Counts on a tokenizer of its own, never waiting for a running ``generate``: a fast
        tokenizer is not thread-safe (an unpadded encode while a batch is padded in another
        thread breaks that batch), and a server checking each request under the model lock
        would hold every request that arrives during a batch until the batch ends, so they
        reach the batcher one by one instead of as one next batch."""
        with self._check_lock:
            if self._check_tokenizer is None:
                self._check_tokenizer = copy.deepcopy(self.tokenizer)
            return self._prepare(prompt, options, self._check_tokenizer).n_tokens

    def _prepare(self, prompt: Any, opts: GenerationOptions, tokenizer: Any = None) -> _Prepared:
        constraint, adapter = None, opts.adapter
        if isinstance(prompt, Request):
            constraint = make_constraint(prompt.json_schema, prompt.regex)
            if prompt.adapter is not None:
                adapter = prompt.adapter
                problem = self._adapter_problem(adapter)
                if problem:
                    raise InputError(problem)
            prompt = prompt.prompt
        text = self._render(prompt, opts.chat)
        n_tokens = len((tokenizer or self.tokenizer)(text, add_special_tokens=False).input_ids)
        room = self.context_length - opts.max_new_tokens
        if n_tokens > room:
            raise InputError(
                f"prompt has {n_tokens} tokens but the context is {self.context_length} and "
                f"max_new_tokens={opts.max_new_tokens} leaves room for {room}; shorten it"
            )
        grammar = self._grammar_compiler().compile(constraint) if constraint else None
        return _Prepared(text, n_tokens, constraint, grammar, adapter)

    def _render(self, prompt: Any, chat: bool = True) -> str:
        if isinstance(prompt, bytes):
            raise InputError("prompt is bytes; decode it to str first (which encoding?)")
        if isinstance(prompt, str):
            if not prompt.strip():
                raise InputError("prompt is empty")
            if not (chat and self.tokenizer.chat_template):
                start = self._text_start
                return prompt if prompt.startswith(start) else start + prompt
            prompt = [{"role": "user", "content": prompt}]
        elif not chat:
            raise InputError("chat=False takes plain-text prompts, not chat messages")
        if not isinstance(prompt, list) or not prompt:
            raise InputError(
                f"prompt must be a str, a list of chat messages or a Request, got {type(prompt)}"
            )
        for message in prompt:
            if not (isinstance(message, dict) and {"role", "content"} <= message.keys()):
                raise InputError(f"chat message must be a dict with role and content: {message!r}")
        if not any(str(m["content"]).strip() for m in prompt):
            raise InputError("prompt is empty")
        if not self.tokenizer.chat_template:
            raise InputError(f"{self.name} has no chat template; pass plain text")
        if prompt[-1]["role"] == "assistant":  # a prefill: the model continues that message
            return self.tokenizer.apply_chat_template(
                prompt, tokenize=False, continue_final_message=True
            )
        return self.tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True
        )

    @functools.cached_property
    def _text_start(self) -> str:
        """What starts a plain-text prompt: the BOS token when the tokenizer adds one itself.

        Prompts are tokenized without special tokens (chat templates write their own), but a
        base model such as Gemma fed text without its ``<bos>`` degenerates into repetition.
        """
        tok = self.tokenizer
        if tok.bos_token is None:
            return ""
        with_special = tok("x", add_special_tokens=True).input_ids
        return tok.bos_token if with_special[:1] == [tok.bos_token_id] else ""

    def _run_chunks(
        self,
        ready: list[_Prepared],
        opts: GenerationOptions,
        progress: bool,
        hooks: dict[str, Any],
    ) -> list[Generation]:
        import torch
        from tqdm.auto import tqdm

        if opts.seed is not None:
            torch.manual_seed(opts.seed)

        # Constrained and free prompts go in separate batches: the grammar processor masks
        # every row it is given. Plain LoRA adapters mix in one batch; any other adapter
        # (DoRA, another PEFT method) gets batches of its own.
        def batch_key(p: _Prepared) -> tuple[bool, str]:
            alone = p.adapter is not None and not self._mixable(p.adapter)
            return (p.constraint is not None, str(p.adapter) if alone else "")

        order = sorted(range(len(ready)), key=lambda i: batch_key(ready[i]))
        results: list[Generation | None] = [None] * len(ready)
        bar = tqdm(total=len(ready), desc=f"{self.name} generate", disable=not progress)
        start = 0
        while start < len(order):
            key = batch_key(ready[order[start]])
            window = order[start : start + self.batch_size]
            chunk = [i for i in window if batch_key(ready[i]) == key]
            generated = self._generate_batch([ready[i] for i in chunk], opts, hooks)
            for i, gen in zip(chunk, generated, strict=True):
                results[i] = gen
            start += len(chunk)
            bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    def _generate_batch(
        self, batch: list[_Prepared], opts: GenerationOptions, hooks: dict[str, Any]
    ) -> list[Generation]:
        import torch

        from slm_agents.models.token_logprobs import ChosenTokenLogprobs, sampling_processors

        enc = self.tokenizer(
            [p.text for p in batch],
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=False,
        ).to(self.device)
        recorder = ChosenTokenLogprobs(opts.top_logprobs)
        processors: list[Any] = []
        if batch[0].grammar is not None:
            processors.append(GrammarCompiler.logits_processor([p.grammar for p in batch]))
        # Order matters: constraint, then temperature/top-p, then the recorder sees the result.
        processors += [*sampling_processors(opts.temperature, opts.top_p), recorder]
        kwargs: dict[str, Any] = dict(
            max_new_tokens=opts.max_new_tokens,
            do_sample=opts.temperature > 0,
            pad_token_id=self.tokenizer.pad_token_id,
            logits_processor=processors,
            # Sampling settings live in `processors`; None keeps transformers from adding its own.
            temperature=None,
            top_p=None,
            top_k=None,
        )
        if opts.stop:
            kwargs.update(stop_strings=list(opts.stop), tokenizer=self.tokenizer)
        kwargs.update(hooks)
        names = {p.adapter for p in batch}
        if len(names) > 1:  # one forward pass, each row through its own adapter (PEFT)
            kwargs["adapter_names"] = [p.adapter or BASE_ROW for p in batch]
            scope = self._mixed_scope(names)
        else:
            scope = self._adapter_scope(batch[0].adapter)
        with Timer() as timer, torch.inference_mode(), scope:
            sequences = self.model.generate(**enc, **kwargs)
        new_tokens = sequences[:, enc.input_ids.shape[1] :]
        logprobs = recorder.logprobs(new_tokens)
        generations = [
            self._to_generation(p, new_tokens[row].tolist(), logprobs[row].tolist(), opts, timer)
            for row, p in enumerate(batch)
        ]
        if opts.top_logprobs:
            for row, gen in enumerate(generations):
                gen.top_logprobs = recorder.top(row, len(gen.token_ids))
        return generations

    def _to_generation(
        self, prepared: _Prepared, ids: list[int], logprobs: list[float], opts, timer
    ) -> Generation:
        end = next((i for i, t in enumerate(ids) if t in self._eos_ids), None)
        text = self.tokenizer.decode(
            ids[: end if end is not None else len(ids)], skip_special_tokens=True
        )
        cut = min((text.find(s) for s in opts.stop if s in text), default=-1)
        if cut >= 0:
            upper = end if end is not None else len(ids)
            text, n, reason = text[:cut], self._tokens_to_stop(ids, opts.stop, upper), "stop"
        elif end is not None:
            n, reason = end + 1, "stop"  # the end-of-sequence token counts as generated
        else:
            n, reason = len(ids), "length"
        gen = Generation(
            text=text,
            token_logprobs=logprobs[:n],
            token_ids=ids[:n],
            confidence=mean_confidence(logprobs[:n]),
            usage=Usage(prepared.n_tokens, n),
            finish_reason=reason,
            latency_s=timer.seconds,
        )
        if prepared.constraint is not None:
            try:
                gen.parsed = parse_output(text, prepared.constraint)
            except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
                gen.error = (
                    f"output is not complete ({reason} after {n} tokens): {exc}; "
                    f"raise max_new_tokens (now {opts.max_new_tokens})"
                )
        return gen

    @property
    def _eos_ids(self) -> set[int]:
        """The ids that end a reply: the generation config's and the tokenizer's."""
        return _as_set(self.model.generation_config.eos_token_id) | {self.tokenizer.eos_token_id}

    def _tokens_to_stop(self, ids: list[int], stops: Sequence[str], upper: int) -> int:
        """How many of ``ids`` it took to write the first stop string.

        Why: in a batch, a row that hit its stop string is padded while the others go on, and
        where the pad token is not end-of-sequence (Gemma) those pads would count as generated
        tokens (usage, cost) and as very unlikely ones (confidence). Binary search over prefix
        decodes: a prefix that contains a stop string stays one when it grows.
        """
        low, high = 1, upper
        while low < high:
            mid = (low + high) // 2
            prefix = self.tokenizer.decode(ids[:mid], skip_special_tokens=True)
            if any(s in prefix for s in stops):
                high = mid
            else:
                low = mid + 1
        return high

    def token_ends(self, token_ids: Sequence[int]) -> list[int]:
        """Where each token ends in the decoded text (character offsets, non-decreasing): ties
        ``Generation.token_logprobs`` to spans of ``Generation.text`` (``TokenAligned``)."""
        ends, last = [], 0
        for k in range(1, len(token_ids) + 1):
            text = self.tokenizer.decode(list(token_ids[:k]), skip_special_tokens=True)
            last = max(last, len(text))
            ends.append(last)
        return ends

    def _grammar_compiler(self) -> GrammarCompiler:
        if self._grammars is None:
            self._grammars = GrammarCompiler(self.tokenizer, self.model.config.vocab_size)
        return self._grammars

    # ------------------------------------------------------------------ LoRA adapters
    @property
    def adapters(self) -> list[str]:
        """Names of the loaded LoRA adapters."""
        return list(getattr(self.model, "peft_config", {}) or {})

    def load_adapter(self, path: str, name: str) -> None:
        """Load a PEFT LoRA adapter from a folder under ``name``; select it per call.

        Takes the model lock, like ``unload_adapter``: it waits for a running ``generate`` or
        ``stream``, so a server may load and evict adapters from other threads.
        """
        from peft import PeftModel

        if self.quantize:
            raise ValueError("LoRA adapters need the unquantized model; load without quantize")
        if name == BASE_ROW:
            raise ValueError(f"{BASE_ROW!r} is reserved for the base model; pick another name")
        with self._lock:
            if name in self.adapters:
                raise ValueError(f"adapter {name!r} is already loaded; unload it first")
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.eval()

    def unload_adapter(self, name: str) -> None:
        """Remove one adapter; removing the last restores the plain base model. Waits for a
        running ``generate`` or ``stream`` (the model lock)."""
        with self._lock:
            if name not in self.adapters:
                raise KeyError(f"no adapter {name!r}; loaded: {self.adapters}")
            if len(self.adapters) == 1:
                self.model = self.model.unload()
            else:
                self.model.delete_adapter(name)

    def _adapter_problem(self, name: str | None) -> str | None:
        """Why ``name`` cannot be used now, or None (None itself is the base model)."""
        if name is None or name in self.adapters:
            return None
        if not self.adapters:
            return f"adapter {name!r} requested but no adapters are loaded"
        return f"unknown adapter {name!r}; loaded: {self.adapters}"

    def _mixable(self, name: str) -> bool:
        """Whether PEFT can run this adapter in a mixed-adapter batch: plain LoRA only (its
        ``adapter_names`` rejects DoRA and is ignored by other PEFT methods)."""
        config = self.model.peft_config[name]
        return (
            getattr(config, "peft_type", None) == "LORA"  # PeftType is a str enum
            and not getattr(config, "use_dora", False)
            and getattr(config, "alora_invocation_tokens", None) is None
        )

    def _mixed_scope(self, names: set[str | None]):
        """Adapters enabled, one of the batch's active: PEFT applies ``adapter_names`` only
        while some adapter is active and enabled; each row then uses its own."""
        import contextlib

        self.model.set_adapter(sorted(n for n in names if n is not None)[0])
        return contextlib.nullcontext()

    def _adapter_scope(self, name: str | None):
        import contextlib

        if not self.adapters:
            if name is not None:
                raise ValueError(f"adapter {name!r} requested but no adapters are loaded")
            return contextlib.nullcontext()
        if name is None:
            return self.model.disable_adapter()
        if name not in self.adapters:
            raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapters}")
        self.model.set_adapter(name)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ info
    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        return {
            "model": self.name,
            "source": self.resolved.source,
            "location": self.resolved.location,
            "device": self.device,
            "quantize": self.quantize or "none",
            "parameters": params,
            "context_length": self.context_length,
            "adapters": ",".join(self.adapters),
        }


def _as_set(value: Any) -> set[int]:
    if value is None:
        return set()
    return set(value) if isinstance(value, (list, tuple)) else {int(value)}
