"""Log-probabilities of the tokens the decoder chose, recorded while it generates.

Why not ``generate(output_scores=True)``: that keeps every step's full-vocabulary scores until
generation ends. For Gemma-3's 262k-token vocabulary that is 1 MB per row per step (about 4 GB
at batch 16 and 256 new tokens), and the copies made decoding about 30% slower at batch 32.
:class:`ChosenTokenLogprobs` keeps one step's log-probabilities and, at the next step, reads the
token that was chosen from ``input_ids``: memory no longer grows with the output length.

Temperature and top-p run as processors in :func:`sampling_processors` (not as transformers'
own warpers, which run after every custom processor) so the recorder sees the distribution the
decoder actually samples from, as ``output_scores`` did.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopPLogitsWarper


class ChosenTokenLogprobs(LogitsProcessor):
    """Pass-through logits processor; must be the last one in the list it is given in.

    ``top_k`` > 0 also keeps, per step, the ``top_k`` most likely tokens and their log-probs
    (OpenAI's ``top_logprobs``): a (batch, k) pair of tensors per step, not the vocabulary.
    """

    def __init__(self, top_k: int = 0) -> None:
        self._columns: list[torch.Tensor] = []  # one (batch,) tensor per finished step
        self._last: torch.Tensor | None = None  # log-probs of the step whose token is not yet known
        self.top_k = top_k
        self._top: list[tuple[torch.Tensor, torch.Tensor]] = []  # (values, ids) per step

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:  # input_ids now ends with the token chosen from self._last
            self._columns.append(self._last.gather(-1, input_ids[:, -1:]).squeeze(-1))
        self._last = torch.log_softmax(scores.float(), dim=-1)
        if self.top_k:
            self._top.append(torch.topk(self._last, self.top_k, dim=-1))
        return scores

    def top(self, row: int, n: int) -> list[list[tuple[int, float]]]:
        """The first ``n`` steps' ``top_k`` alternatives of batch row ``row``: (id, logprob).
        Tokens a constraint or top-p ruled out (log-prob -inf) are left out: they were never
        alternatives, and JSON cannot carry -inf."""
        return [
            [
                (i, v)
                for i, v in zip(ids[row].tolist(), values[row].tolist(), strict=True)
                if math.isfinite(v)
            ]  # fmt: skip
            for values, ids in self._top[:n]
        ]

    def logprobs(self, new_tokens: torch.LongTensor) -> torch.Tensor:
        """(batch, n) log-probabilities of ``new_tokens``, the (batch, n) ids generate returned."""
        n = new_tokens.shape[1]
        columns = self._columns[:n]
        if len(columns) < n and self._last is not None:  # the final step's token
            columns.append(self._last.gather(-1, new_tokens[:, len(columns)].unsqueeze(-1))[:, 0])
        if len(columns) != n:
            raise RuntimeError(f"recorded {len(columns)} steps for {n} generated tokens")
        return torch.stack(columns, dim=1)


def sampling_processors(temperature: float, top_p: float) -> list[Any]:
    """The warpers for sampling at ``temperature`` with nucleus ``top_p``; none when greedy."""
    if temperature <= 0:
        return []
    warpers: list[Any] = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p))
    return warpers
