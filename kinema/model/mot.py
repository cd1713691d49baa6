"""The Mixture-of-Transformers backbone: two experts per layer, one shared attention.

Legend: B batch, L tokens, Lc cached context tokens, Lk = Lc + L keys, D width,
H heads, Dh head dim, N routed tokens (all samples flattened).

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

A reasoner-only backbone (`experts=("und",)`, the autoregressive world model)
builds no generator weights at all and refuses generator tokens. For
autoregressive decoding the cache can `reserve` room so that each new token's
K/V is written in place instead of copying the whole past, and `keep` drops
rejected speculative tokens. An explicit `attn_mask` replaces the group rule
where one integer per token cannot say who attends whom (Medusa's tree of
candidates: each attends its own ancestors only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kinema.nn.rope import apply_rope, rope_angles

NOISY = 1 << 30  # the group of every noisy token
EXPERTS = ("und", "gen")


def attention_mask(q_group, q_valid, k_group, k_valid) -> torch.Tensor:
    """[B, Lq], [B, Lq], [B, Lk], [B, Lk] -> bool [B, 1, Lq, Lk], True = may attend.

    Padding queries attend everything (their outputs are ignored) so no row is empty.
    """
    m = (k_group[:, None, :] <= q_group[:, :, None]) & k_valid[:, None, :]
    return (m | ~q_valid[:, :, None])[:, None]


class Router:
    """Splits flattened tokens into the two experts' index sets once per forward."""

    def __init__(self, gen: torch.Tensor, experts: tuple[str, ...] = EXPERTS):
        flat = gen.reshape(-1)
        self.shape = gen.shape
        self.gen = flat.nonzero().squeeze(1)
        if "gen" not in experts and len(self.gen):
            raise ValueError(f"gen: {len(self.gen)} tokens are marked for the generator expert, but this backbone "
                             f"has only the reasoner expert (experts={tuple(experts)}); pass gen all False")
        self.und = (~flat).nonzero().squeeze(1)

    def __call__(self, x: torch.Tensor, f_und, f_gen, out_dim: int | None = None) -> torch.Tensor:
        """x [B, L, Din] -> [B, L, Dout], f_und on reasoner tokens, f_gen on generator tokens."""
        flat = x.reshape(-1, x.shape[-1])
        if not len(self.gen):  # every token is the reasoner's: no gather (the same numbers, one copy fewer)
            return f_und(flat).reshape(*self.shape, -1)
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
    k: torch.Tensor  # [B, H, Lc, Dh], rotated; with a buffer, a view of its first Lc rows
    v: torch.Tensor
    buf_k: torch.Tensor | None = None  # [B, H, capacity, Dh] reserved room (see Cache.reserve)
    buf_v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> LayerCache:
        """The past plus new k, v [B, H, L, Dh]: written in place after the past when the buffer has room
        (no copy of the past, which is what makes decoding against a long context cheap), else concatenated.
        Rows past Lc belong to no one, so writing there leaves every earlier LayerCache of this buffer intact."""
        Lc, L = self.k.shape[2], k.shape[2]
        if self.buf_k is not None and Lc + L <= self.buf_k.shape[2] and k.dtype == self.buf_k.dtype:
            self.buf_k[:, :, Lc : Lc + L] = k
            self.buf_v[:, :, Lc : Lc + L] = v
            return LayerCache(self.buf_k[:, :, : Lc + L], self.buf_v[:, :, : Lc + L], self.buf_k, self.buf_v)
        return LayerCache(torch.cat([self.k, k.to(self.k.dtype)], 2), torch.cat([self.v, v.to(self.v.dtype)], 2))


@dataclass
class Cache:
    """K/V of the context at every layer, with what the mask needs to know about it."""

    layers: list[LayerCache]
    group: torch.Tensor  # [B, Lc]
    valid: torch.Tensor  # [B, Lc]

    def __len__(self) -> int:
        return self.group.shape[1]

    def reserve(self, capacity: int) -> Cache:
        """This cache copied once into buffers of `capacity` rows, so that later `keep_cache` forwards write
        their K/V in place (LayerCache.extend) instead of concatenating the whole past at every token."""
        if capacity < len(self):
            raise ValueError(f"capacity: expected at least the {len(self)} cached tokens, got {capacity}")
        layers = []
        for lc in self.layers:
            B, H, Lc, Dh = lc.k.shape
            bk, bv = lc.k.new_empty(B, H, capacity, Dh), lc.v.new_empty(B, H, capacity, Dh)
            bk[:, :, :Lc], bv[:, :, :Lc] = lc.k, lc.v
            layers.append(LayerCache(bk[:, :, :Lc], bv[:, :, :Lc], bk, bv))
        return Cache(layers, self.group, self.valid)

    def keep(self, prefix: int, extra: torch.Tensor) -> Cache:
        """The first `prefix` tokens, then the tokens at positions `extra` [n] (each >= prefix), in that order:
        speculative decoding keeps the accepted candidates and forgets the rejected ones. In a reserved
        buffer only the n moved rows are copied."""
        extra = torch.as_tensor(extra, dtype=torch.long, device=self.group.device)
        if extra.dim() != 1 or (len(extra) and (int(extra.min()) < prefix or int(extra.max()) >= len(self))):
            raise ValueError(f"extra: expected positions in [{prefix}, {len(self)}), got {extra.tolist()}")
        n, layers = len(extra), []
        for lc in self.layers:
            k, v = lc.k.index_select(2, extra), lc.v.index_select(2, extra)  # copies: safe to write back below
            if lc.buf_k is not None:
                end = prefix + n
                lc.buf_k[:, :, prefix:end], lc.buf_v[:, :, prefix:end] = k, v
                layers.append(LayerCache(lc.buf_k[:, :, :end], lc.buf_v[:, :, :end], lc.buf_k, lc.buf_v))
            else:
                k, v = torch.cat([lc.k[:, :, :prefix], k], 2), torch.cat([lc.v[:, :, :prefix], v], 2)
                layers.append(LayerCache(k, v))
        group = torch.cat([self.group[:, :prefix], self.group.index_select(1, extra)], 1)
        valid = torch.cat([self.valid[:, :prefix], self.valid.index_select(1, extra)], 1)
        return Cache(layers, group, valid)


class Layer(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, experts: tuple[str, ...] = EXPERTS):
        super().__init__()
        self.heads = heads
        self.und = Expert(width, heads, hidden)
        if "gen" in experts:
            self.gen = Expert(width, heads, hidden)

    def forward(self, x, route: Router, cos, sin, mask, past: LayerCache | None, keep: bool = False):
        """x [B, L, D] -> (x [B, L, D], the past's and these tokens' K/V [B, H, Lc + L, Dh] if keep, else None)."""
        H = self.heads
        qkv = route(x, lambda t: self.und.qkv_normed(t, H).flatten(1), lambda t: self.gen.qkv_normed(t, H).flatten(1))
        q, k, v = qkv.unflatten(-1, (H, -1)).transpose(1, 2).chunk(3, dim=-1)  # [B, H, L, Dh] each
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        new = None
        if past is None:
            keys, values = k, v
            new = LayerCache(k, v) if keep else None
        elif keep:
            new = past.extend(k, v)
            keys, values = new.k, new.v
        else:
            keys, values = torch.cat([past.k, k.to(past.k.dtype)], 2), torch.cat([past.v, v.to(past.v.dtype)], 2)
        a = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask)
        a = a.transpose(1, 2).flatten(2)  # [B, L, D]
        x = x + route(a, self.und.proj, lambda t: self.gen.proj(t))  # self.gen is absent in a reasoner-only MoT
        x = x + route(x, lambda t: self.und.mlp(self.und.norm2(t)), lambda t: self.gen.mlp(self.gen.norm2(t)))
        return x, new


class MoT(nn.Module):
    """experts: ("und", "gen") for the omnimodal model, ("und",) for a reasoner-only decoder (no generator weights)."""

    def __init__(self, width: int, depth: int, heads: int, hidden: int, rope_theta: float = 10000.0,
                 experts: tuple[str, ...] = EXPERTS):
        super().__init__()
        experts = tuple(experts)
        if experts not in (EXPERTS, ("und",)):
            raise ValueError(f"experts: expected {EXPERTS} or ('und',), got {experts}")
        self.heads, self.rope_theta, self.experts = heads, rope_theta, experts
        self.layers = nn.ModuleList(Layer(width, heads, hidden, experts) for _ in range(depth))
        self.norm_und = RMSNorm(width)
        if "gen" in experts:
            self.norm_gen = RMSNorm(width)

    def forward(self, x, gen, group, valid, pos, cache: Cache | None = None, keep_cache: bool = False,
                attn_mask: torch.Tensor | None = None):
        """x [B, L, D] embedded tokens; gen/valid bool [B, L]; group int [B, L]; pos [B, L, 3].

        cache: K/V of context tokens already run (the tokens in x then attend them too).
        keep_cache: also return the Cache of the past and x's K/V (x must be context: its K/V cannot depend on later tokens).
        attn_mask: bool [B or 1, 1, L, Lc + L], True = may attend; replaces the group rule (padding keys stay
            unattended). The groups still go into the returned Cache for later tokens' masks.
        -> (hidden [B, L, D] after the final norm of each token's expert, Cache or None)
        """
        route = Router(gen, self.experts)
        cos, sin = rope_angles(pos, x.shape[-1] // self.heads, self.rope_theta)
        k_group, k_valid = group, valid
        if cache is not None:
            k_group, k_valid = torch.cat([cache.group, group], 1), torch.cat([cache.valid, valid], 1)
        if attn_mask is None:
            mask = attention_mask(group, valid, k_group, k_valid)
        else:
            B, L = group.shape
            Lk = k_group.shape[1]
            if (attn_mask.dtype != torch.bool or attn_mask.dim() != 4 or attn_mask.shape[0] not in (1, B)
                    or tuple(attn_mask.shape[1:]) != (1, L, Lk)):
                raise ValueError(f"attn_mask: expected bool [{B} or 1, 1, {L}, {Lk}] (queries x cached + new keys), "
                                 f"got {attn_mask.dtype} {tuple(attn_mask.shape)}")
            mask = (attn_mask & k_valid[:, None, None, :]) | ~valid[:, None, :, None]
        kept = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, route, cos, sin, mask, cache.layers[i] if cache is not None else None, keep_cache)
            if keep_cache:
                kept.append(kv)
        x = route(x, self.norm_und, getattr(self, "norm_gen", None))
        return x, (Cache(kept, k_group, k_valid) if keep_cache else None)
