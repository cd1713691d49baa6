"""The Mixture-of-Transformers backbone: two experts per layer, one shared attention.

Legend: B batch, L tokens, Lc cached context tokens, D width, H heads,
Dh head dim, N routed tokens (all samples flattened).

Every layer holds a reasoner ("und") and a generator ("gen") copy of: input
norm, Q/K/V/O projections, QK RMSNorm, post-attention norm and SwiGLU MLP.
Tokens are routed by role, not by a learned router: `gen[b, l]` is True for
noisy tokens being generated. Both experts' Q/K/V meet in one attention.

The attention mask comes from one integer per token, its `group`:

    token i may attend key j   iff   group[j] <= group[i]   (and j is not padding)

Context tokens take increasing groups (each text token its own; a clean latent
frame and the audio/actions at its time share one), so context is causal
(block-causal across time); noisy tokens all take NOISY, larger than any
context group, so they see every context token and each other, while context
never sees them. Because context never attends noisy tokens, its keys and
values do not depend on them: `forward(..., cache=...)` runs only the noisy
tokens against K/V computed once for the context (the sampler's cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kinema.nn.rope import apply_rope, rope_angles

NOISY = 1 << 30  # the group of every noisy token


def attention_mask(q_group, q_valid, k_group, k_valid) -> torch.Tensor:
    """[B, Lq], [B, Lq], [B, Lk], [B, Lk] -> bool [B, 1, Lq, Lk], True = may attend.

    Padding queries attend everything (their outputs are ignored) so no row is empty.
    """
    m = (k_group[:, None, :] <= q_group[:, :, None]) & k_valid[:, None, :]
    return (m | ~q_valid[:, :, None])[:, None]


class Router:
    """Splits flattened tokens into the two experts' index sets once per forward."""

    def __init__(self, gen: torch.Tensor):
        flat = gen.reshape(-1)
        self.shape = gen.shape
        self.und = (~flat).nonzero().squeeze(1)
        self.gen = flat.nonzero().squeeze(1)

    def __call__(self, x: torch.Tensor, f_und, f_gen, out_dim: int | None = None) -> torch.Tensor:
        """x [B, L, Din] -> [B, L, Dout], f_und on reasoner tokens, f_gen on generator tokens."""
        flat = x.reshape(-1, x.shape[-1])
        parts = [(idx, f(flat[idx])) for idx, f in ((self.und, f_und), (self.gen, f_gen)) if len(idx)]
        if len(parts) == 1 and len(parts[0][0]) == len(flat):  # a single expert: no scatter needed
            return parts[0][1].reshape(*self.shape, -1)
        dim = parts[0][1].shape[-1]
        out = flat.new_zeros(len(flat), dim, dtype=parts[0][1].dtype)
        for idx, y in parts:
            out = out.index_copy(0, idx, y)
        return out.reshape(*self.shape, dim)


class RMSNorm(nn.RMSNorm):
    """RMSNorm in the input's dtype: under bf16 autocast the fp32 weight would block the fused kernel."""

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Expert(nn.Module):
    """One expert's share of a layer."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_norm = RMSNorm(width // heads)
        self.k_norm = RMSNorm(width // heads)
        self.proj = nn.Linear(width, width, bias=False)
        self.norm2 = RMSNorm(width)
        self.mlp = SwiGLU(width, hidden)

    def qkv_normed(self, x, heads: int):
        """x [N, D] -> q, k, v [N, H, Dh] with q and k RMS-normalised per head."""
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, heads, -1)).unbind(-3)
        return torch.cat([self.q_norm(q), self.k_norm(k), v], dim=-1)


@dataclass
class LayerCache:
    k: torch.Tensor  # [B, H, Lc, Dh], rotated
    v: torch.Tensor


@dataclass
class Cache:
    """K/V of the context at every layer, with what the mask needs to know about it."""

    layers: list[LayerCache]
    group: torch.Tensor  # [B, Lc]
    valid: torch.Tensor  # [B, Lc]


class Layer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.und = Expert(width, heads, hidden)
        self.gen = Expert(width, heads, hidden)

    def forward(self, x, route: Router, cos, sin, mask, past: LayerCache | None):
        """x [B, L, D] -> (x [B, L, D], (k, v) [B, H, Lc + L, Dh] of the past and these tokens)."""
        H = self.heads
        qkv = route(x, lambda t: self.und.qkv_normed(t, H).flatten(1), lambda t: self.gen.qkv_normed(t, H).flatten(1))
        q, k, v = qkv.unflatten(-1, (H, -1)).transpose(1, 2).chunk(3, dim=-1)  # [B, H, L, Dh] each
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = (k, v) if past is None else (torch.cat([past.k, k], 2), torch.cat([past.v, v], 2))
        a = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask)
        a = a.transpose(1, 2).flatten(2)  # [B, L, D]
        x = x + route(a, self.und.proj, self.gen.proj)
        x = x + route(x, lambda t: self.und.mlp(self.und.norm2(t)), lambda t: self.gen.mlp(self.gen.norm2(t)))
        return x, (keys, values)


class MoT(nn.Module):
    def __init__(self, width: int, depth: int, heads: int, hidden: int, rope_theta: float = 10000.0):
        super().__init__()
        self.heads, self.rope_theta = heads, rope_theta
        self.layers = nn.ModuleList(Layer(width, heads, hidden) for _ in range(depth))
        self.norm_und = RMSNorm(width)
        self.norm_gen = RMSNorm(width)

    def forward(self, x, gen, group, valid, pos, cache: Cache | None = None, keep_cache: bool = False):
        """x [B, L, D] embedded tokens; gen/valid bool [B, L]; group int [B, L]; pos [B, L, 3].

        cache: K/V of context tokens already run (the tokens in x then attend them too).
        keep_cache: also return the Cache of the past and x's K/V (x must be context: its K/V cannot depend on later tokens).
        -> (hidden [B, L, D] after the final norm of each token's expert, Cache or None)
        """
        route = Router(gen)
        cos, sin = rope_angles(pos, x.shape[-1] // self.heads, self.rope_theta)
        k_group, k_valid = group, valid
        if cache is not None:
            k_group, k_valid = torch.cat([cache.group, group], 1), torch.cat([cache.valid, valid], 1)
        mask = attention_mask(group, valid, k_group, k_valid)
        kept = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, route, cos, sin, mask, cache.layers[i] if cache is not None else None)
            if keep_cache:
                kept.append(LayerCache(*kv))
        x = route(x, self.norm_und, self.norm_gen)
        return x, (Cache(kept, k_group, k_valid) if keep_cache else None)
