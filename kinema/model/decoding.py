"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus) sampling.

Legend: B batch, V vocabulary.

Shared by the reasoner (text) and the autoregressive world model (FSQ codes).
Greedy is temperature 0. Top-k keeps the k largest logits; top-p keeps the
smallest set of tokens whose probability sums to at least p (the most likely
token always survives). A `torch.Generator` makes sampling reproducible.
Stop strings are for text (the reasoner); the world model's codes have none.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREFILTER = 256  # candidates ranked before falling back to a full sort (top-p)


@dataclass
class SamplingParams:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0            # 0 = off
    top_p: float = 1.0        # 1 = off
    max_new_tokens: int = 64
    seed: int = 0
    # text: the answer ends before the first of these it holds (a str or a list of them; kept as a tuple)
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature: expected >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k: expected >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: expected in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: expected >= 1, got {self.max_new_tokens}")
        stop = (self.stop,) if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop: expected a non-empty string or a list of them, got {self.stop!r:.80}")
        self.stop = tuple(stop)


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """[B, V] -> [B, V] with the tokens outside top-k / top-p set to -inf."""
    logits = logits.float()
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # Sorting 64,000 FSQ logits per token is slow on a CPU: rank only the best PREFILTER when they
        # already hold p of the mass (the usual case), which gives the same kept set as a full sort.
        lse = logits.logsumexp(-1, keepdim=True)
        k = min(PREFILTER, logits.shape[-1])
        sorted_logits, order = logits.topk(k, dim=-1)
        probs = (sorted_logits - lse).exp()
        if k < logits.shape[-1] and not bool((probs.sum(-1) >= top_p).all()):
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = (sorted_logits - lse).exp()
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        keep_sorted = before < top_p       # p not yet covered without this token (the first always stays)
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, keep_sorted)
        logits = logits.masked_fill(~keep, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, V] -> [B] token ids."""
    if params.temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits / params.temperature, params.top_k, params.top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
