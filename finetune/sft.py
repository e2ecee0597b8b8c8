"""LoRA supervised fine-tuning (SFT) of a causal SLM on prompt/response pairs.

The recipe, and why it is fast enough on 2 CPU cores:

1. Data: a JSONL of ``{"prompt": ..., "response": ...}`` (the prompt a string or chat messages,
   optional ``"system"``) or ``{"messages": [...]}`` whose last message is the assistant's
   answer. The tokenizer's chat template renders each row exactly as ``CausalLM.generate`` will
   at inference, and every row is tokenized once.
2. Loss only on the response (and its end-of-turn token): prompt positions are masked, and the
   output layer (49k-word vocabulary) runs only at those positions, not at every prompt token.
3. A row longer than ``max_length`` loses prompt tokens from the left; the response is never cut
   (a response that alone does not fit is an error). Truncated rows are counted and warned about.
4. PEFT LoRA (rank 16 on every attention and MLP projection by default), bf16 autocast where the
   CPU has bf16 instructions (about 2x here), length-bucketed batches padded to their own longest
   row, and the shared loop (:mod:`slm_agents.finetune.loop`: budgets, early stopping, resume).

The output directory is a PEFT adapter (``CausalLM.load_adapter(path, name)`` loads it) plus
``sft.json`` (base model, recipe, settings, metrics). Validation reports the mean held-out loss
per response token and its perplexity; the loop keeps the epoch with the lowest loss.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from slm_agents import tracking
from slm_agents.finetune.batches import bucketed, by_length
from slm_agents.finetune.data import DataError, read_rows
from slm_agents.finetune.loop import TrainConfig, TrainReport, fit
from slm_agents.models.sources import BUNDLED, DEFAULT_CAUSAL, ensure_converted, resolve

SFT_FILE = "sft.json"
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Messages = list[dict[str, str]]


@dataclass
class SFTSettings:
    """What to train; the loop's settings (epochs, batch size, budget) are a TrainConfig."""

    base: str = DEFAULT_CAUSAL
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_TARGETS
    top_layers: int | None = None  # LoRA only in the last N blocks: backward stops below them
    max_length: int = 1024
    validation: float = 0.05  # share of the training rows held out when no validation is given
    precision: str = "auto"  # "auto" (bf16 autocast where supported), "bf16" or "fp32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        checks = {
            "rank": self.rank >= 1,
            "alpha": self.alpha > 0,
            "dropout": 0.0 <= self.dropout < 1.0,
            "top_layers": self.top_layers is None or self.top_layers >= 1,
            "max_length": self.max_length >= 16,
            "validation": 0.0 <= self.validation < 1.0,
            "precision": self.precision in ("auto", "bf16", "fp32"),
        }
        bad = {name: getattr(self, name) for name, ok in checks.items() if not ok}
        if bad:
            raise ValueError(f"invalid SFT settings: {bad}")


# ------------------------------------------------------------------------------------- data
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


# ------------------------------------------------------------------------------------ train
@dataclass
class SFTResult:
    output: Path
    recipe: str
    train_rows: int
    validation_rows: int
    truncated: int
    start_loss: float | None
    loss: float | None
    report: TrainReport
    tokens_per_epoch: int = 0  # tokens in the training set, prompts included
    tokens_per_second: float | None = None  # this session's training tokens / training seconds
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None

    @property
    def start_perplexity(self) -> float | None:
        return _perplexity(self.start_loss)

    @property
    def perplexity(self) -> float | None:
        return _perplexity(self.loss)

    def summary(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "recipe": self.recipe,
            "train_rows": self.train_rows,
            "validation_rows": self.validation_rows,
            "truncated_rows": self.truncated,
            "validation_loss_before": self.start_loss,
            "validation_loss": self.loss,
            "perplexity_before": self.start_perplexity,
            "perplexity": self.perplexity,
            "epochs_run": self.report.epochs_run,
            "steps": self.report.steps,
            "train_seconds": self.report.seconds,
            "tokens_per_epoch": self.tokens_per_epoch,
            "tokens_per_second": self.tokens_per_second,
            "precision": self.precision,
            "stopped": self.report.stopped,
            "resumed_from_step": self.report.resumed_from_step,
            "model_version": self.model_version,
            **self.extra,
        }


def train_sft(
    train: Encodable,
    output: str | Path,
    *,
    validation: Encodable | None = None,
    test: Encodable | None = None,
    settings: SFTSettings | None = None,
    config: TrainConfig | None = None,
    recipe: str = "sft",
    extra: dict[str, Any] | None = None,
    progress: bool = True,
    track: bool = True,
    register_as: str | None = None,
) -> SFTResult:
    """LoRA-train ``settings.base`` on ``train``, save the adapter to ``output``, report.

    Without ``validation`` a ``settings.validation`` share of chat data is held out (none for
    other data: then there is no early stopping). ``test`` is scored before and after training
    and never used to pick weights (``test_loss``/``test_perplexity`` in the summary). ``extra``
    goes into ``sft.json`` and the summary (recipes put their split there). Training state is
    checkpointed in ``output/checkpoint``: run again with the same settings to resume.
    """
    import torch

    settings, config = settings or SFTSettings(), config or TrainConfig(learning_rate=1e-3)
    if len(train) == 0:
        raise DataError(f"{train.source or 'training data'}: no rows")
    if validation is None and settings.validation > 0 and isinstance(train, ChatData):
        if len(train) < 2:
            raise DataError(f"{train.source}: one row; need two to hold one out for validation")
        train, validation = train.split(settings.validation, seed=config.seed)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    precision = _precision(settings)
    params = {
        "recipe": recipe,
        "train": train.source,
        "train_rows": len(train),
        "validation_rows": len(validation) if validation is not None else 0,
        **{f"settings.{k}": v for k, v in asdict(settings).items()},
        **{f"train.{k}": v for k, v in asdict(config).items()},
    }
    with tracking.run(f"{recipe}:{output.name}", params=params) if track else nullcontext():
        torch.manual_seed(config.seed)  # LoRA's initial A matrices are random
        model, tokenizer = _build(settings)
        train_tok = train.encode(tokenizer, settings.max_length)
        val_tok = validation.encode(tokenizer, settings.max_length) if validation else None
        test_tok = test.encode(tokenizer, settings.max_length) if test else None
        autocast = _autocast(settings.device, precision)
        loss_of = _loss_function(model, settings.device, autocast)
        val_seconds = 0.0

        def validate() -> dict[str, float]:
            nonlocal val_seconds
            started = time.monotonic()
            loss = mean_loss(model, val_tok, loss_of, config.batch_size)
            val_seconds += time.monotonic() - started
            return {"neg_loss": -loss, "loss": loss, "perplexity": _perplexity(loss)}

        start_loss = validate()["loss"] if val_tok is not None else None
        extra = dict(extra or {})
        if test_tok is not None:
            extra["test_rows"] = len(test_tok)
            before = mean_loss(model, test_tok, loss_of, config.batch_size)
            extra["test_loss_before"] = _round(before)
        tracking.log_metrics({"val_loss": start_loss or 0.0}, step=0)
        val_seconds = 0.0
        seen = {"tokens": 0}

        def batches(epoch: int) -> list[list[int]]:
            return bucketed(train_tok.lengths, config.batch_size, seed=config.seed, epoch=epoch)

        def loss(rows: list[int]) -> Any:
            seen["tokens"] += sum(train_tok.lengths[i] for i in rows)
            return loss_of(train_tok.batch(rows))

        started = time.monotonic()
        report = fit(
            model,
            batches=batches,
            loss=loss,
            config=config,
            validate=validate if val_tok is not None else None,
            metric="neg_loss",
            checkpoint_dir=output / "checkpoint",
            fingerprint={
                "recipe": recipe,
                **asdict(settings),
                "rows": len(train_tok),
                "tokens": train_tok.tokens,
            },
            description=f"SFT {resolve(settings.base).name}",
            progress=progress,
        )
        train_seconds = time.monotonic() - started - val_seconds
        rate = round(seen["tokens"] / train_seconds, 1) if seen["tokens"] else None
        final = report.best_metric
        if val_tok is not None and final is None:
            final = -mean_loss(model, val_tok, loss_of, config.batch_size)
        loss_after = None if final is None else -final
        if test_tok is not None:
            extra["test_loss"] = _round(mean_loss(model, test_tok, loss_of, config.batch_size))
            extra["test_perplexity_before"] = _perplexity(extra["test_loss_before"])
            extra["test_perplexity"] = _perplexity(extra["test_loss"])
        result = SFTResult(
            output,
            recipe,
            len(train_tok),
            len(val_tok) if val_tok is not None else 0,
            train_tok.truncated,
            _round(start_loss),
            _round(loss_after),
            report,
            train_tok.tokens,
            rate,
            precision,
            extra,
        )
        save_adapter(model, output, settings, config, result)
        tracking.log_metrics(
            {"final_val_loss": loss_after or 0.0, "tokens_per_second": rate or 0.0}, report.steps
        )
        tracking.log_dict(json.loads((output / SFT_FILE).read_text()), SFT_FILE)
        for name in (SFT_FILE, "adapter_config.json", "adapter_model.safetensors"):
            tracking.log_artifact(output / name, "adapter")
        result.model_version = tracking.register_model(
            register_as or f"{recipe}-{output.name}", "adapter"
        )
    return result


def mean_loss(model: Any, data: Tokenized, loss_of: Any, batch_size: int = 8) -> float:
    """Mean loss per trained token over ``data`` (no gradient); perplexity is its exp."""
    import torch

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for rows in by_length(data.lengths, batch_size):
            batch = data.batch(rows)
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(loss_of(batch)) * n
            count += n
    model.train(was_training)
    return total / max(count, 1)


def save_adapter(
    model: Any, output: Path, settings: SFTSettings, config: TrainConfig, result: SFTResult
) -> None:
    """The PEFT adapter files plus ``sft.json``: what was trained on what, and how well."""
    model.save_pretrained(output)
    bundled = BUNDLED.get(settings.base.lower())
    meta = {
        "format": 1,
        "kind": "causal-lora",
        "base_model": settings.base,
        "base_hub_id": bundled.hub_id if bundled else None,
        "recipe": result.recipe,
        "settings": asdict(settings),
        "train": asdict(config),
        "metrics": {k: v for k, v in result.summary().items() if k not in result.extra},
        **result.extra,
    }
    (output / SFT_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------ load / use
class AdapterError(ValueError):
    """An adapter directory is missing, incomplete or unreadable; the message says which."""


def read_adapter_info(path: str | Path) -> dict[str, Any]:
    """Check an adapter directory's files and return its ``sft.json`` (or a minimal stand-in)."""
    path = Path(path)
    if not path.is_dir():
        raise AdapterError(f"{path}: not a directory (expected a LoRA adapter from finetune)")
    config = path / "adapter_config.json"
    if not config.exists():
        raise AdapterError(f"{path}: no adapter_config.json; not a PEFT adapter directory")
    peft_config = _read_json(config)
    weights = [path / "adapter_model.safetensors", path / "adapter_model.bin"]
    if not any(w.exists() for w in weights):
        raise AdapterError(f"{path}: no adapter_model.safetensors; the adapter weights are missing")
    if (path / SFT_FILE).exists():
        return _read_json(path / SFT_FILE)
    return {"base_model": peft_config.get("base_model_name_or_path"), "recipe": None}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{path}: not valid JSON ({exc}); the adapter is corrupted") from None
    if not isinstance(value, dict):
        raise AdapterError(f"{path}: expected a JSON object; the adapter is corrupted")
    return value


def load_tuned(
    model_or_adapter: Any, *, base: str | None = None, name: str = "sft", device: str = "cpu"
) -> tuple[Any, str | None, dict[str, Any]]:
    """A ``CausalLM`` ready to generate, the adapter name to pass it, and the adapter's info.

    Accepts a loaded ``CausalLM`` (used as it is), an adapter directory (its base model is
    loaded, then the adapter under ``name``; ``base`` overrides the recorded base), or a model
    name, path or hub id (no adapter: zero-shot).
    """
    from slm_agents.models import CausalLM

    if isinstance(model_or_adapter, CausalLM):
        return model_or_adapter, None, {}
    path = Path(str(model_or_adapter))
    if not (path.is_dir() and (path / "adapter_config.json").exists()):
        if path.is_dir() and (path / SFT_FILE).exists():
            read_adapter_info(path)  # raises, naming the missing file
        return CausalLM(str(model_or_adapter), device=device), None, {}
    info = read_adapter_info(path)
    base = base or info.get("base_model")
    if not base:
        raise AdapterError(f"{path}: no base model recorded; pass the base model explicitly")
    lm = CausalLM(base, device=device)
    try:
        lm.load_adapter(str(path), name)
    except Exception as exc:  # safetensors, PEFT and shape errors all mean "unusable adapter"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(
            f"{path}: cannot load the LoRA adapter onto {base} ({type(exc).__name__}: "
            f"{reason[:300]})"
        ) from None
    return lm, name, info


# ------------------------------------------------------------------------------- internals
def _build(settings: SFTSettings) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve(settings.base)
    location = str(ensure_converted(resolved)) if resolved.gguf_file else resolved.location
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForCausalLM.from_pretrained(location, dtype="float32").to(settings.device)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in settings.target_modules if m not in present]
    if missing:
        raise ValueError(
            f"{settings.base} has no modules named {missing}; pick target_modules among its "
            "Linear layers"
        )
    extra: dict[str, Any] = {}
    if settings.top_layers:
        blocks = int(model.config.num_hidden_layers)
        extra["layers_to_transform"] = list(range(max(0, blocks - settings.top_layers), blocks))
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        task_type="CAUSAL_LM",
        **extra,
    )
    model.config.use_cache = False
    return get_peft_model(model, config), tokenizer


def _precision(settings: SFTSettings) -> str:
    if settings.precision != "auto":
        return settings.precision
    import torch

    if settings.device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:  # fast bf16 matmuls need AVX512-BF16 or AMX; elsewhere bf16 is slower than fp32
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


def _autocast(device: str, precision: str) -> Any:
    import torch

    if precision != "bf16":
        return nullcontext
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)


def _loss_function(model: Any, device: str, autocast: Any) -> Any:
    """Mean cross-entropy over the trained positions; the vocabulary projection runs only there.

    Falls back to the model's own forward for architectures that post-process logits
    (soft-capping, scaling), where calling the head directly would be wrong.
    """
    import torch.nn.functional as F

    base = model.get_base_model()
    plain = ("final_logit_softcapping", "logit_scale")
    direct = hasattr(base, "get_decoder") and all(
        getattr(base.config, a, None) in (None, 1.0) for a in plain
    )
    body = base.get_decoder() if direct else None
    head = base.get_output_embeddings()

    def loss_of(batch: dict[str, Any]) -> Any:
        batch = {k: v.to(device) for k, v in batch.items()}
        targets = batch["labels"][:, 1:]
        keep = targets != -100
        with autocast():
            if direct:
                hidden = body(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).last_hidden_state
                logits = head(hidden[:, :-1][keep])
            else:
                logits = model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits[:, :-1][keep]
        return F.cross_entropy(logits.float(), targets[keep])

    return loss_of


def _perplexity(loss: float | None) -> float | None:
    return None if loss is None else round(math.exp(min(loss, 50.0)), 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
