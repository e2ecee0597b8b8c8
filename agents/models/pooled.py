"""The trained classifier's network: encoder, mean pooling, unit length, one linear layer.

Why this shape and not ``AutoModelForSequenceClassification``: sentence encoders such as
all-MiniLM-L6-v2 were trained to produce *mean-pooled, unit-length* embeddings; their ``[CLS]``
pooler is untrained. Keeping that pooling lets the head start from the class centroids
(:func:`prototype_weights`), which alone scores ~85% on BANKING77 before any gradient step, so
LoRA training has far less to do on 2 CPU cores.

This module imports torch at import time; :mod:`slm_agents.models.classifier` imports it lazily.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from torch import nn

HEAD_FILE = "head.safetensors"
INT8_FILE = "encoder.int8.pt"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors a sentence really has (padding excluded), then unit length."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return nn.functional.normalize(pooled, dim=-1)


class PooledClassifier(nn.Module):
    """``logits = head(normalize(mean_pool(encoder(text))))``; the head's scale sets sharpness."""

    def __init__(self, encoder: nn.Module, num_labels: int):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the [CLS] pooler is unused here: no compute, no LoRA on it
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        return mean_pool(hidden.last_hidden_state, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra: Any):
        return self.head(self.embed(input_ids, attention_mask, **extra))


def prototype_weights(embeddings: torch.Tensor, label_ids: torch.Tensor, num_labels: int):
    """Head weights from unit-length class centroids (nearest-centroid classifier).

    Scaled by 20 (a softmax temperature of 0.05, as in zero-shot use) so the start is confident
    where the centroids are far apart.
    """
    sums = torch.zeros(num_labels, embeddings.shape[1], dtype=embeddings.dtype)
    sums.index_add_(0, label_ids, embeddings)
    return nn.functional.normalize(sums, dim=-1) * 20.0


def save_head(model: PooledClassifier, directory: str) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.head.state_dict().items()}
    save_file(state, f"{directory}/{HEAD_FILE}")


def load_head(model: PooledClassifier, directory: str) -> None:
    from safetensors.torch import load_file

    state = load_file(f"{directory}/{HEAD_FILE}")
    expected = tuple(model.head.weight.shape)
    if tuple(state["weight"].shape) != expected:
        raise ValueError(
            f"{directory}/{HEAD_FILE}: head shape {tuple(state['weight'].shape)} does not match "
            f"{expected[0]} labels x {expected[1]} hidden"
        )
    model.head.load_state_dict(state)


def keep_first_layers(encoder: nn.Module, layers: int) -> nn.Module:
    """Drop all but the first ``layers`` transformer blocks: a shallower, faster student.

    Works for BERT-style encoders (``encoder.layer``) and most others (``layers``).
    """
    for name, module in encoder.named_modules():
        if name.rsplit(".", 1)[-1] in ("layer", "layers") and isinstance(module, nn.ModuleList):
            if not 1 <= layers <= len(module):
                raise ValueError(f"layers must be in 1..{len(module)}, got {layers}")
            del module[layers:]
            encoder.config.num_hidden_layers = layers
            return encoder
    raise ValueError(f"cannot find the transformer blocks of {type(encoder).__name__}")


@contextlib.contextmanager
def quiet_peft_warnings():
    """PEFT calls a transformers method that transformers 5 deprecates (a FutureWarning about
    ``is_gradient_checkpointing`` on every adapter load); it is not ours to fix or to show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield
