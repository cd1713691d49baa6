"""Next-token cross-entropy with the z-loss (REFERENCE §3): the language-model objective.

Legend: N scored positions, V vocabulary.

    loss = mean(CE(logits, target)) + z_weight * mean(logsumexp(logits)^2)

The z-loss keeps the softmax normaliser near 1 so logits do not drift (PaLM,
Cosmos 1 AR uses 1e-4). Returns both terms so logs show each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Z_WEIGHT = 1e-4


def lm_loss(logits: torch.Tensor, target: torch.Tensor, z_weight: float = Z_WEIGHT) -> tuple[torch.Tensor, dict]:
    """logits [N, V], target [N] -> (total loss, {"ce", "z"} as floats)."""
    if logits.shape[0] != target.shape[0]:
        raise ValueError(f"logits has {logits.shape[0]} rows but target has {target.shape[0]}")
    logits = logits.float()
    ce = F.cross_entropy(logits, target)
    z = logits.logsumexp(-1).pow(2).mean()
    return ce + z_weight * z, {"ce": float(ce.detach()), "z": float(z.detach())}
