"""Make a trained classifier smaller or faster: int8 quantization and pruning.

Each function reads a classifier directory (from ``finetune classifier``) and writes a new one
that ``EncoderClassifier`` loads like any other, plus a report: size, sparsity, and when labelled
data is given, accuracy and speed before and after, measured in the same process.

* :func:`quantize` - dynamic int8 (torch): Linear weights stored as int8, activations quantized
  on the fly. CPU only. About 4x smaller Linear weights; faster matmuls on CPU.
* :func:`prune` with ``method="magnitude"`` - unstructured: the smallest ``amount`` of Linear
  weights (one global threshold) set to zero. Smaller when compressed, not faster with dense
  kernels; said plainly in the report.
* :func:`prune` with ``method="mlp-channels"`` - structured: the ``amount`` of each feed-forward
  block's hidden channels with the smallest weight norms removed, so the matrices really shrink
  and inference gets faster. BERT-style encoders (``intermediate.dense`` / ``output.dense``).

An optional recovery fine-tune (``recover=`` labelled data) trains a LoRA on the pruned model
and merges it; after magnitude pruning the pruned weights are set back to zero so the stated
sparsity holds.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from slm_agents.finetune.data import LabelledTexts

METHODS = ("magnitude", "mlp-channels")


def quantize(
    source: str | Path, output: str | Path, *, data: LabelledTexts | None = None
) -> dict[str, Any]:
    """Write an int8 copy of ``source`` to ``output``; report size (and accuracy/speed)."""
    from slm_agents.models.base import quantize_int8

    original = _load(source)
    quantized = quantize_int8(original.model)
    _save(original, quantized, output)
    return _report("int8", source, output, original.model, quantized, data)


def prune(
    source: str | Path,
    output: str | Path,
    *,
    method: str = "magnitude",
    amount: float = 0.3,
    data: LabelledTexts | None = None,
    recover: LabelledTexts | None = None,
    recover_minutes: float = 2.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Prune ``amount`` (0-1) of the encoder's Linear weights or MLP channels."""
    import copy

    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; use one of {list(METHODS)}")
    if not 0.0 < amount < 1.0:
        raise ValueError(f"amount must be between 0 and 1 (a share to remove), got {amount}")
    original = _load(source)
    pruned = copy.deepcopy(original.model)
    if method == "magnitude":
        _magnitude_prune(pruned.encoder, amount)
    else:
        _prune_mlp_channels(pruned.encoder, amount)
    _save(original, pruned, output)
    recovery = None
    if recover is not None:
        recovery = _recover(output, recover, recover_minutes, progress)
        if method == "magnitude":  # keep the stated sparsity: LoRA's update is dense
            recovered = _load(output)
            _apply_zero_mask(recovered.model.encoder, pruned.encoder)
            _save(recovered, recovered.model, output)
            pruned = recovered.model
        else:
            pruned = _load(output).model
    report = _report(f"prune:{method}", source, output, original.model, pruned, data)
    report.update(amount=amount, recovery=recovery)
    return report


def linear_sparsity(module: Any) -> float:
    """Share of exactly-zero weights over all Linear layers."""
    import torch

    zeros = total = 0
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            zeros += int((layer.weight == 0).sum())
            total += layer.weight.numel()
    return round(zeros / total, 4) if total else 0.0


def serialized_bytes(model: Any) -> int:
    """Bytes of the model's weights as torch saves them (same measure for float and int8)."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def compressed_bytes(model: Any) -> int:
    """Bytes after zlib: what zeros from unstructured pruning save in storage or transfer."""
    import zlib

    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return len(zlib.compress(buffer.getvalue(), 6))


# ---------------------------------------------------------------------------- internals
def _load(directory: str | Path) -> Any:
    from slm_agents.models.classifier import EncoderClassifier

    classifier = EncoderClassifier(str(directory), device="cpu")
    meta = classifier.meta
    if meta.get("architecture") != "mean-pool" or meta.get("encoder") == "int8":
        raise ValueError(
            f"{directory}: compress needs a float classifier from `finetune classifier` "
            f"(got architecture={meta.get('architecture')!r}, encoder={meta.get('encoder')!r})"
        )
    return classifier


def _save(original: Any, model: Any, output: str | Path) -> None:
    from slm_agents.models.classifier import save_pooled_classifier

    save_pooled_classifier(
        model,
        original.tokenizer,
        original.labels,
        output,
        base_model=original.meta["base_model"],
        max_length=original.max_length,
        extra=original.meta.get("training"),
        layers=None,  # the saved encoder is complete: nothing to cut on load
    )


def _magnitude_prune(encoder: Any, amount: float) -> None:
    import torch
    from torch.nn.utils import prune as torch_prune

    linears = [(m, "weight") for m in encoder.modules() if isinstance(m, torch.nn.Linear)]
    torch_prune.global_unstructured(linears, torch_prune.L1Unstructured, amount=amount)
    for module, name in linears:
        torch_prune.remove(module, name)  # make the zeros permanent, drop the mask


def _apply_zero_mask(encoder: Any, reference: Any) -> None:
    import torch

    pairs = zip(encoder.modules(), reference.modules(), strict=True)
    with torch.no_grad():
        for mine, theirs in pairs:
            if isinstance(mine, torch.nn.Linear):
                mine.weight[theirs.weight == 0] = 0.0


def _prune_mlp_channels(encoder: Any, amount: float) -> None:
    import torch

    blocks = [m for m in encoder.modules() if hasattr(m, "intermediate") and hasattr(m, "output")]
    if not blocks:
        raise ValueError(
            f"{type(encoder).__name__} has no BERT-style feed-forward blocks "
            "(intermediate.dense / output.dense); use method='magnitude'"
        )
    width = blocks[0].intermediate.dense.out_features
    keep = max(1, int(round(width * (1.0 - amount))))
    for block in blocks:
        up, down = block.intermediate.dense, block.output.dense
        score = up.weight.norm(dim=1) * down.weight.norm(dim=0)  # a channel's in- and out-weights
        kept = torch.sort(torch.topk(score, keep).indices).values
        block.intermediate.dense = _slice_linear(up, rows=kept)
        block.output.dense = _slice_linear(down, columns=kept)
    encoder.config.intermediate_size = keep


def _slice_linear(layer: Any, rows: Any = None, columns: Any = None) -> Any:
    import torch

    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else None
    if rows is not None:
        weight, bias = weight[rows], (bias[rows] if bias is not None else None)
    if columns is not None:
        weight = weight[:, columns]
    new = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _recover(output: str | Path, data: LabelledTexts, minutes: float, progress: bool) -> dict:
    from slm_agents.finetune.classifier import ClassifierSettings, train_classifier
    from slm_agents.finetune.loop import TrainConfig

    result = train_classifier(
        data,
        output,
        settings=ClassifierSettings(start_from=str(output), rank=8, alpha=16),
        config=TrainConfig(epochs=1, max_minutes=minutes, learning_rate=5e-4),
        progress=progress,
        track=False,
    )
    return {
        "steps": result.report.steps,
        "seconds": result.report.seconds,
        "validation_accuracy": result.accuracy,
    }


def _report(
    kind: str, source: Any, output: Any, before: Any, after: Any, data: LabelledTexts | None
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "method": kind,
        "source": str(source),
        "output": str(output),
        "bytes_before": serialized_bytes(before),
        "bytes_after": serialized_bytes(after),
        "zlib_bytes_before": compressed_bytes(before),
        "zlib_bytes_after": compressed_bytes(after),
    }
    if kind != "int8":  # a quantized model's int8 weights are not Parameters: no fair count
        report["parameters_before"] = sum(p.numel() for p in before.parameters())
        report["parameters_after"] = sum(p.numel() for p in after.parameters())
        report["sparsity_after"] = linear_sparsity(after)
    if data is not None:
        for tag in ("before", "after"):
            accuracy, per_second = _score(source if tag == "before" else output, data)
            report[f"accuracy_{tag}"] = accuracy
            report[f"texts_per_second_{tag}"] = per_second
    return report


def _score(directory: Any, data: LabelledTexts) -> tuple[float, float]:
    from slm_agents.models.classifier import EncoderClassifier

    classifier = EncoderClassifier(str(directory), device="cpu")
    classifier.predict(data.texts[:64])  # warm-up: first calls pay one-off costs
    started = time.perf_counter()
    predictions = classifier.predict(data.texts)
    seconds = time.perf_counter() - started
    correct = sum(p.label == t for p, t in zip(predictions, data.labels, strict=True))
    return round(correct / len(data), 4), round(len(data) / seconds, 1)
