"""kinema.model.lm_loss (CE + z-loss) of a linear output head, fused and chunked for a 64,000-code vocabulary.

Legend: N scored tokens, r head input width, V vocabulary, n tokens per chunk.

    logits = u @ W.T + b;   loss = mean(CE(logits, target)) + z_weight * mean(logsumexp(logits)^2)

The same number lm_loss computes (tests check it, value and gradients), at a fraction of the cost on a CPU:
autograd through lm_loss walks the [N, V] logits a dozen times (softmax, logsumexp and their backward
passes, dtype copies) and, for a few-million-parameter model, that dominates a training step. Here each chunk
of logits is made once in fp32 and turned in place into its gradient,

    dloss/dlogits = softmax(logits) * (1 + 2·z_weight·lse) / N  -  onehot(target) / N

which is multiplied into the gradients of u, W and b at once (as Liger's fused linear cross-entropy), so the
backward pass only scales them and [N, V] never exists.
"""

from __future__ import annotations

import torch

from kinema.model.lm_loss import Z_WEIGHT

CHUNK = 128  # [128, V] fp32 is 33 MB: near the cache, and twice as fast as 1024 here


class _HeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, W, b, target, z_weight: float, chunk: int):
        N = u.shape[0]
        # The three [n, V] x [V, r] products run in u's dtype (bf16 under autocast: 3x faster on this CPU, as any
        # bf16 LM head); everything over the vocabulary (softmax, lse, gradient) is fp32.
        mm = u.dtype if u.dtype in (torch.bfloat16, torch.float16) else torch.float32
        um, Wm, bm = u.to(mm), W.to(mm), b.to(mm)
        need = ctx.needs_input_grad
        gu = torch.empty(u.shape, dtype=torch.float32, device=u.device) if need[0] else None
        gW = torch.zeros(W.shape, dtype=torch.float32, device=u.device) if need[1] else None
        gb = torch.zeros(b.shape, dtype=torch.float32, device=u.device) if need[2] else None
        ce = u.new_zeros((), dtype=torch.float32)
        z = u.new_zeros((), dtype=torch.float32)
        for a in range(0, N, chunk):
            uc, tc = um[a : a + chunk], target[a : a + chunk]
            logits = torch.addmm(bm, uc, Wm.T).float()  # [n, V]
            picked = logits.gather(1, tc[:, None]).squeeze(1)
            top = logits.amax(-1)
            e = logits.sub_(top[:, None]).exp_()  # in place: no second [n, V] buffer
            total = e.sum(-1)
            lse = top + total.log()
            ce += (lse - picked).sum()
            z += lse.square().sum()
            if gu is None and gW is None and gb is None:
                continue
            g = e.mul_(((1 + 2 * z_weight * lse) / (N * total))[:, None])  # softmax · (1 + 2·zw·lse) / N
            g[torch.arange(len(tc), device=g.device), tc] -= 1.0 / N
            if gb is not None:
                gb += g.sum(0)
            g = g.to(mm)
            if gu is not None:
                gu[a : a + chunk] = g @ Wm
            if gW is not None:
                gW += g.T @ uc
        ctx.save_for_backward(*(t for t in (gu, gW, gb) if t is not None))
        ctx.have = (gu is not None, gW is not None, gb is not None)
        ctx.dtypes = (u.dtype, W.dtype, b.dtype)
        ce, z = ce / N, z / N
        return ce + z_weight * z, ce, z

    @staticmethod
    def backward(ctx, grad, _ce, _z):
        saved = iter(ctx.saved_tensors)
        out = [(next(saved) * grad).to(dt) if have else None for have, dt in zip(ctx.have, ctx.dtypes)]
        return (*out, None, None, None)


def head_lm_loss(u: torch.Tensor, W: torch.Tensor, b: torch.Tensor, target: torch.Tensor,
                 z_weight: float = Z_WEIGHT, chunk: int = CHUNK) -> tuple[torch.Tensor, dict]:
    """u [N, r], W [V, r], b [V], target [N] -> (loss, {"ce", "z"} as floats), as lm_loss(u @ W.T + b, target)."""
    if u.dim() != 2 or W.dim() != 2 or u.shape[1] != W.shape[1] or b.shape != (W.shape[0],):
        raise ValueError(f"head_lm_loss: expected u [N, r], W [V, r], b [V]; got {tuple(u.shape)}, "
                         f"{tuple(W.shape)}, {tuple(b.shape)}")
    if target.shape != (u.shape[0],):
        raise ValueError(f"u has {u.shape[0]} rows but target has shape {tuple(target.shape)}")
    if len(target) == 0:
        raise ValueError("target: no token to score")
    if int(target.min()) < 0 or int(target.max()) >= W.shape[0]:
        raise ValueError(f"target: expected indices in [0, {W.shape[0]}), got "
                         f"[{int(target.min())}, {int(target.max())}]")
    with torch.autocast(u.device.type, enabled=False):
        loss, ce, z = _HeadLoss.apply(u, W, b, target, float(z_weight), int(chunk))
    return loss, {"ce": float(ce.detach()), "z": float(z.detach())}
