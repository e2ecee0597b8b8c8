"""Encoder classifiers: text in, a label and the full probability vector out.

Two ways to get one:

* **zero-shot** (no training): pass ``labels`` as names or ``{name: description}``. Texts and
  descriptions are embedded (mean pooling, unit length) and the probabilities are
  ``softmax(cosine / temperature)``. A sensible start before ``finetune`` has data to learn from.
* **trained**: pass a directory written by :func:`save_classifier` (a PEFT LoRA adapter with its
  head, or a full fine-tuned model) holding ``classifier.json`` with the label names.

Texts longer than ``max_length`` tokens are truncated with a warning (the start of a ticket
carries its intent); empty or non-text inputs get an error result.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slm_agents import tracking
from slm_agents.models.base import InputError, Model, Prediction, Timer, pick_device, run_isolated
from slm_agents.models.sources import DEFAULT_ENCODER, resolve

CLASSIFIER_FILE = "classifier.json"
MEAN_POOL = "mean-pool"  # see slm_agents.models.pooled


class EncoderClassifier(Model):
    """Classify texts with an encoder (MiniLM by default).

    Args:
        model: a classifier directory (see module doc), or an encoder for zero-shot use.
        labels: for zero-shot: label names, or a mapping of label name to a description.
        temperature: zero-shot softmax temperature over cosine similarities.
    """

    kind = "classifier"

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        *,
        labels: Sequence[str] | Mapping[str, str] | None = None,
        device: str = "auto",
        batch_size: int = 64,
        max_length: int = 128,
        temperature: float = 0.05,
    ):
        import torch  # noqa: F401  (fail early, with torch's own message, when it is missing)

        self.device = pick_device(device)
        self._lock = threading.Lock()  # agents sharing this model call it one at a time
        self.batch_size, self.max_length, self.temperature = batch_size, max_length, temperature
        directory = Path(str(model)).expanduser()
        if (directory / CLASSIFIER_FILE).exists():
            if labels is not None:
                raise ValueError(f"{directory} carries its own labels; do not pass labels=")
            self._load_trained(directory)
        else:
            if not labels:
                raise ValueError(
                    f"{model!r} is not a classifier directory (no {CLASSIFIER_FILE}); "
                    "pass labels=[...] or {label: description} for zero-shot classification"
                )
            self._load_zero_shot(model, labels)
        self.name = self.resolved.name

    # ------------------------------------------------------------------ loading
    def _load_zero_shot(self, model: str, labels: Sequence[str] | Mapping[str, str]) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.mode = "zero-shot"
        self.resolved = resolve(model)
        descriptions = dict(labels) if isinstance(labels, Mapping) else {x: x for x in labels}
        if len(descriptions) < 2:
            raise ValueError(f"need at least two labels, got {list(descriptions)}")
        self.labels = list(descriptions)
        self.descriptions = descriptions
        self.tokenizer = AutoTokenizer.from_pretrained(self.resolved.location)
        self.model = AutoModel.from_pretrained(self.resolved.location).to(self.device).eval()
        self._label_vectors = self._embed(list(descriptions.values()))

    def _load_trained(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        self.mode = "trained"
        meta = _read_meta(directory)
        self.labels = list(meta["labels"])
        self.max_length = int(meta.get("max_length", self.max_length))
        self.meta = meta
        if meta.get("architecture") == MEAN_POOL:
            self.model = self._load_pooled(directory, meta)
        else:
            self.model = self._load_sequence_classification(directory, meta)
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.model = self.model.to(self.device).eval()

    def _load_pooled(self, directory: Path, meta: dict[str, Any]) -> Any:
        """Encoder (LoRA adapter on the base, full weights, or int8) + mean pooling + head."""
        import torch
        from transformers import AutoConfig, AutoModel

        from slm_agents.models.pooled import (
            INT8_FILE,
            PooledClassifier,
            keep_first_layers,
            load_head,
            quiet_peft_warnings,
        )

        encoder_format = meta.get("encoder", "lora")
        self.resolved = resolve(meta["base_model"] if encoder_format == "lora" else str(directory))
        try:
            if encoder_format == "int8":
                from slm_agents.models.base import quantize_int8

                encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(directory)))
                model = quantize_int8(PooledClassifier(encoder, len(self.labels)))
                state = torch.load(directory / INT8_FILE, weights_only=False)
                model.load_state_dict(state)
                return model
            if encoder_format == "lora":
                from peft import PeftModel

                base = AutoModel.from_pretrained(self.resolved.location)
                base.pooler = None  # as in training: PooledClassifier has no [CLS] pooler
                if meta.get("layers"):
                    base = keep_first_layers(base, int(meta["layers"]))
                with quiet_peft_warnings():
                    encoder = PeftModel.from_pretrained(base, str(directory)).merge_and_unload()
            else:
                encoder = AutoModel.from_pretrained(str(directory))
            model = PooledClassifier(encoder, len(self.labels))
            load_head(model, str(directory))
            return model
        except Exception as exc:
            raise ValueError(
                f"cannot load the {encoder_format} classifier in {directory}: {exc}"
            ) from exc

    def _load_sequence_classification(self, directory: Path, meta: dict[str, Any]) -> Any:
        """A plain Hugging Face sequence-classification model or a PEFT adapter for one."""
        from transformers import AutoModelForSequenceClassification

        id2label = dict(enumerate(self.labels))
        label2id = {v: k for k, v in id2label.items()}
        if (directory / "adapter_config.json").exists():
            from peft import PeftModel

            self.resolved = resolve(meta["base_model"])
            base = AutoModelForSequenceClassification.from_pretrained(
                self.resolved.location,
                num_labels=len(self.labels),
                id2label=id2label,
                label2id=label2id,
            )
            try:
                return PeftModel.from_pretrained(base, str(directory))
            except Exception as exc:
                raise ValueError(f"cannot load the LoRA adapter in {directory}: {exc}") from exc
        self.resolved = resolve(str(directory))
        try:
            return AutoModelForSequenceClassification.from_pretrained(str(directory))
        except Exception as exc:
            raise ValueError(f"cannot load the model in {directory}: {exc}") from exc

    # ------------------------------------------------------------------ prediction
    def predict(self, texts: Sequence[str], *, progress: bool = False) -> list[Prediction]:
        """One Prediction per text, in order; bad texts get an error, the rest still run."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in [ ]")
        with self._lock, tracking.model_call(self.name, "predict", list(texts)) as span:
            results = run_isolated(
                list(texts), _check_text, lambda ok: self._predict_valid(ok, progress), _failed
            )
            span.record(results)
        return results

    def _predict_valid(self, texts: list[str], progress: bool) -> list[Prediction]:
        from tqdm.auto import tqdm

        self._warn_if_truncated(texts)
        # Similar lengths batched together waste less compute on padding; order is restored.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[Prediction | None] = [None] * len(texts)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc=f"{self.name} predict", disable=not progress):
            rows = order[start : start + self.batch_size]
            with Timer() as timer:
                probs = self._probabilities([texts[i] for i in rows])
            for i, row in zip(rows, probs.tolist(), strict=True):
                best = max(range(len(row)), key=row.__getitem__)
                out[i] = Prediction(
                    label=self.labels[best],
                    probabilities=dict(zip(self.labels, row, strict=True)),
                    confidence=row[best],
                    latency_s=timer.seconds,
                )
        return out  # type: ignore[return-value]  (every slot is filled)

    def _probabilities(self, texts: list[str]) -> Any:
        import torch

        with torch.inference_mode():
            if self.mode == "zero-shot":
                similarity = self._embed(texts) @ self._label_vectors.T
                return torch.softmax(similarity / self.temperature, dim=-1).cpu()
            enc = self._tokenize(texts)
            out = self.model(**enc)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            return torch.softmax(logits.float(), dim=-1).cpu()

    def _tokenize(self, texts: list[str]) -> Any:
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        """Unit-length sentence embeddings (a float32 tensor, n x d) of the zero-shot encoder.

        Batched by ``batch_size`` (default: the classifier's), so any number of texts fits in
        memory; used to compare texts with each other (near-duplicates, clusters), not only with
        label descriptions. Texts are truncated at ``max_length`` tokens.
        """
        import torch

        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts; wrap a single text in [ ]")
        if self.mode != "zero-shot":
            raise ValueError(
                "embed needs a plain encoder (a zero-shot classifier); a trained classifier's "
                "encoder was tuned for its labels"
            )
        texts = [_check_text(t) for t in texts]
        size = batch_size or self.batch_size
        if not texts:
            return torch.empty(0, self.model.config.hidden_size)
        with self._lock:
            parts = [
                self._embed(texts[start : start + size]).float().cpu()
                for start in range(0, len(texts), size)
            ]
        return torch.cat(parts)

    def _embed(self, texts: list[str]) -> Any:
        """Mean-pooled, unit-length sentence embeddings (how all-MiniLM-L6-v2 was trained)."""
        import torch

        with torch.inference_mode():
            enc = self._tokenize(texts)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    def _warn_if_truncated(self, texts: list[str]) -> None:
        # A tokenizer makes at most one token per UTF-8 byte (plus a few special tokens), so
        # only texts that long can overflow: the rest are not tokenized a second time.
        maybe = [t for t in texts if len(t.encode()) + 4 > self.max_length]
        lengths = (
            [len(ids) for ids in self.tokenizer(maybe, truncation=False).input_ids] if maybe else []
        )
        long = sum(n > self.max_length for n in lengths)
        if long:
            warnings.warn(
                f"{long} of {len(texts)} texts exceed max_length={self.max_length} tokens and "
                "were truncated",
                stacklevel=4,
            )

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | Path) -> Path:
        """Write a trained classifier so ``EncoderClassifier(directory)`` loads it back."""
        if self.mode != "trained":
            raise ValueError("a zero-shot classifier has no weights to save; train one first")
        if self.meta.get("architecture") == MEAN_POOL:
            return save_pooled_classifier(
                self.model,
                self.tokenizer,
                self.labels,
                directory,
                self.meta["base_model"],
                self.max_length,
                extra=self.meta.get("training"),
            )
        return save_classifier(
            self.model, self.tokenizer, self.labels, directory, self.resolved.name, self.max_length
        )

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "mode": self.mode,
            "source": self.resolved.source,
            "device": self.device,
            "labels": len(self.labels),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "max_length": self.max_length,
        }


def save_classifier(
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    directory: str | Path,
    base_model: str,
    max_length: int = 128,
) -> Path:
    """Save a sequence-classification model (PEFT-wrapped or full) as a classifier directory.

    ``base_model`` is what a PEFT adapter is loaded on top of (a bundled name, path or hub id).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    meta = {"labels": list(labels), "base_model": base_model, "max_length": max_length}
    (directory / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))
    return directory


def save_pooled_classifier(
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    directory: str | Path,
    base_model: str,
    max_length: int = 128,
    extra: Mapping[str, Any] | None = None,
    layers: int | None = None,
) -> Path:
    """Save a :class:`~slm_agents.models.pooled.PooledClassifier` as a classifier directory.

    The encoder's form picks the format, recorded as ``encoder`` in ``classifier.json``:
    ``lora`` (a PEFT adapter, a few MB, loaded on top of ``base_model``), ``int8`` (a dynamically
    quantized model's state) or ``full`` (plain weights, e.g. after merging or pruning).
    ``extra`` (training facts: data, accuracy, time) is kept under ``training``; ``layers`` says
    how many of the base encoder's blocks a LoRA adapter was trained on.
    """
    import torch

    from slm_agents.models.pooled import INT8_FILE, save_head

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    quantized = any("quantized" in type(m).__module__ for m in model.modules())
    if quantized:
        encoder_format = "int8"
        model.encoder.config.save_pretrained(str(directory))
        torch.save(model.state_dict(), directory / INT8_FILE)
    else:
        encoder_format = "lora" if hasattr(model.encoder, "peft_config") else "full"
        model.encoder.save_pretrained(str(directory))
        save_head(model, str(directory))
    tokenizer.save_pretrained(str(directory))
    meta = {
        "labels": list(labels),
        "base_model": base_model,
        "max_length": max_length,
        "architecture": MEAN_POOL,
        "encoder": encoder_format,
    }
    if layers:
        meta["layers"] = layers
    if extra:
        meta["training"] = dict(extra)
    (directory / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2))
    return directory


def _read_meta(directory: Path) -> dict[str, Any]:
    path = directory / CLASSIFIER_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from exc
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) for x in labels)
    ):
        raise ValueError(f"{path}: 'labels' must be a list of at least two strings, got {labels!r}")
    if (directory / "adapter_config.json").exists() and not meta.get("base_model"):
        raise ValueError(
            f"{path}: a LoRA adapter needs 'base_model' (the encoder it was trained on)"
        )
    return meta


def _check_text(text: Any) -> str:
    if isinstance(text, bytes):
        raise InputError("text is bytes; decode it to str first (which encoding?)")
    if not isinstance(text, str):
        raise InputError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise InputError("text is empty")
    return text


def _failed(message: str) -> Prediction:
    return Prediction(error=message)
