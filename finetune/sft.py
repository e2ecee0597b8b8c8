"""The SFT run: LoRA supervised fine-tuning of a causal SLM on prompt/response pairs.

The recipe, and why it is fast enough on 2 CPU cores:

1. Data (:mod:`slm_agents.finetune.sft_data`): each row rendered by the tokenizer's chat
   template exactly as ``CausalLM.generate`` will at inference, tokenized once.
2. Loss only on the response (and its end-of-turn token): prompt positions are masked, and the
   output layer (49k-word vocabulary) runs only at those positions, not at every prompt token.
3. PEFT LoRA (rank 16 on every attention and MLP projection by default), bf16 autocast where the
   CPU has bf16 instructions (about 2x here), length-bucketed batches padded to their own longest
   row, and the shared loop (:mod:`slm_agents.finetune.loop`: budgets, early stopping, resume).

The output directory is a PEFT adapter plus ``sft.json`` (:mod:`slm_agents.finetune.sft_adapter`
writes it; :mod:`slm_agents.models.adapters` reads and loads it). Validation reports the mean
held-out loss per response token and its perplexity; the loop keeps the epoch with the lowest
loss. Without validation data no validation metric is logged at all (no stand-in value).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slm_agents import tracking
from slm_agents.finetune.batches import bucketed, by_length
from slm_agents.finetune.data import DataError
from slm_agents.finetune.loop import TrainConfig, TrainReport, fit
from slm_agents.finetune.sft_adapter import save_adapter
from slm_agents.finetune.sft_data import ChatData, Encodable, Tokenized
from slm_agents.models.adapters import SFT_FILE
from slm_agents.models.sources import DEFAULT_CAUSAL, ensure_converted, resolve

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


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
        tracking.log_metrics(_measured({"val_loss": start_loss}), step=0)
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
        save_adapter(
            model,
            output,
            base=settings.base,
            recipe=recipe,
            settings=asdict(settings),
            train=asdict(config),
            metrics={k: v for k, v in result.summary().items() if k not in result.extra},
            extra=result.extra,
        )
        tracking.log_metrics(
            _measured({"final_val_loss": loss_after, "tokens_per_second": rate}), report.steps
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


def _measured(metrics: dict[str, float | None]) -> dict[str, float]:
    """Only the metrics that were measured: a missing validation loss logged as 0.0 would read
    as a perfect score in MLflow."""
    return {name: value for name, value in metrics.items() if value is not None}


def _perplexity(loss: float | None) -> float | None:
    return None if loss is None else round(math.exp(min(loss, 50.0)), 4)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
