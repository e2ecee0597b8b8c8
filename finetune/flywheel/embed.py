"""Sentence embeddings of call texts: :func:`slm_agents.models.embedding.embed_texts`.

It lives in the inference layer, because a deployed team's cluster router embeds each request
exactly as the flywheel embedded the calls; this module keeps the flywheel's import path.
"""

from slm_agents.models.embedding import WINDOW, embed_texts

__all__ = ["WINDOW", "embed_texts"]
