"""Sentence embeddings of whole texts, for comparing texts with each other.

The flywheel compares logged calls with these (near-duplicates, clusters), and a team's
cluster router sends each request to the nearest cluster with the same function, so a request
is embedded exactly as the calls its cluster was found in.

The bundled MiniLM encoder runs locally, so texts never leave the machine to be compared. One
encoder per model name is loaded per process and reused. A text longer than the encoder's
window (:data:`WINDOW`, 256 tokens, the length all-MiniLM-L6-v2 was trained on) is embedded
window by window and the windows averaged: two receipts with one header and different lines
stay different.
"""

from __future__ import annotations

import functools
from typing import Any

from slm_agents.models.sources import DEFAULT_ENCODER

WINDOW = 256  # tokens, special tokens included


def embed_texts(texts: list[str], *, model: str = DEFAULT_ENCODER, batch_size: int = 64) -> Any:
    """Embed ``texts`` as a float32 ``numpy.ndarray`` of shape (n, d), each row unit length.

    Rows follow the order of ``texts``; the dot product of two rows is their cosine similarity.
    An empty or non-string text is a ``ValueError`` naming its position.
    """
    import numpy

    if isinstance(texts, str):
        raise TypeError("embed_texts takes a list of texts; wrap a single text in [ ]")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            what = "empty" if isinstance(text, str) else f"a {type(text).__name__}, not a str"
            raise ValueError(f"text {i} is {what}")
    model_ = encoder(model)
    pieces, owner = [], []
    for i, text in enumerate(texts):
        for piece in _windows(model_.tokenizer, text):
            pieces.append(piece)
            owner.append(i)
    if not pieces:
        return numpy.zeros((0, model_.model.config.hidden_size), dtype=numpy.float32)
    vectors = model_.embed(pieces, batch_size=batch_size).numpy().astype(numpy.float32)
    if len(pieces) == len(texts):
        return numpy.ascontiguousarray(vectors)
    summed = numpy.zeros((len(texts), vectors.shape[1]), dtype=numpy.float32)
    numpy.add.at(summed, numpy.asarray(owner), vectors)
    return summed / numpy.linalg.norm(summed, axis=1, keepdims=True).clip(min=1e-12)


def _windows(tokenizer: Any, text: str) -> list[str]:
    """``text`` as is when it fits the window, else cut into pieces that each fit."""
    if len(text.encode()) + 2 <= WINDOW:  # at most one token per byte: it fits
        return [text]
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    size = WINDOW - 2  # room for [CLS] and [SEP]
    if len(ids) <= size:
        return [text]
    return [tokenizer.decode(ids[i : i + size]) for i in range(0, len(ids), size)]


@functools.lru_cache(maxsize=2)
def encoder(model: str = DEFAULT_ENCODER) -> Any:
    """The plain encoder ``embed_texts`` uses for ``model`` (loaded once per process); its
    ``name`` is the name the price table prices it by."""
    from slm_agents.models.classifier import EncoderClassifier

    # Zero-shot mode loads the plain encoder; it needs label descriptions, which embed ignores.
    return EncoderClassifier(model, labels=["text", "other text"], max_length=WINDOW)
