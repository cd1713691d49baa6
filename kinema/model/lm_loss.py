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


def keep_loss(logits: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor,
              hold: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Learning without forgetting (Li & Hoiem 2016): KL(teacher || student) at the positions the teacher
    already predicts right (its argmax is the target), averaged over all N positions; a fine-tune that drills
    one question keeps the teacher's whole answer distribution on what it knew, and is free where it was wrong.
    hold: bool [N], the positions that may be kept at all (None: every one; the tasks a fine-tune keeps).
    logits, teacher [N, V], target [N] -> (loss, {"keep": float, "kept": fraction of positions held})."""
    if logits.shape != teacher.shape or logits.shape[0] != target.shape[0] or (
            hold is not None and hold.shape != target.shape):
        raise ValueError(f"keep loss: student {tuple(logits.shape)}, teacher {tuple(teacher.shape)}, target "
                         f"{tuple(target.shape)} and hold {None if hold is None else tuple(hold.shape)} must agree "
                         "([N, V], [N, V], [N], [N])")
    log_t = F.log_softmax(teacher.float(), -1)
    kl = (log_t.exp() * (log_t - F.log_softmax(logits.float(), -1))).sum(-1)  # [N]
    held = (teacher.argmax(-1) == target) & (True if hold is None else hold)
    held = held.float()
    loss = (kl * held).sum() / max(target.shape[0], 1)
    return loss, {"keep": float(loss.detach()), "kept": float(held.mean())}
