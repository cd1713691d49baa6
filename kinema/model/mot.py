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

With `adapter` (a rank), the reasoner expert also holds a low-rank update of its
projections (LoRA) that only tokens marked `adapt` take: the reasoner answers
questions through base + update while every other clean token (a generator
sample's prompt and given frames) runs the base weights alone, so training the
update alone teaches the reasoner without moving what the generator reads.

With `gen_adapter` (a rank), the generator expert likewise holds a LoRA that only
the noisy tokens of samples marked `inverse` take (the world model marks its
inverse-dynamics samples), so one mode can be taught without moving the others;
with `context_adapter` too, the reasoner expert holds one more that those
samples' clean tokens take, so that mode also reads its given frames through
weights of its own (its context cache is then its own).

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
    """Splits flattened tokens once per forward into the ways a token can go, each an (expert, adapter site) pair:
    ("gen", None) the generator's base weights; ("gen", site) an inverse-dynamics adapter (the noisy tokens of
    samples marked in `inverse` {site: bool [B, 1]}: the shared `inverse` or an embodiment's own `inverse_{slot}`);
    ("und", site) a reasoner's question adapter (clean tokens marked in `adapt` {site: bool}: the shared `lora` or
    a world's own `lora_{world}`); ("und", site) the reasoner's inverse-dynamics adapter of that site (the other clean tokens of those samples, with `inverse_context`);
    ("und", None) the reasoner's base weights (the rest)."""

    def __init__(self, gen: torch.Tensor, experts: tuple[str, ...] = EXPERTS, adapt: dict[str, torch.Tensor] | None = None,
                 inverse: dict[str, torch.Tensor] | None = None, inverse_context: bool = False):
        flat = gen.reshape(-1)
        self.shape = gen.shape
        if "gen" not in experts and bool(flat.any()):
            raise ValueError(f"gen: {int(flat.sum())} tokens are marked for the generator expert, but this backbone "
                             f"has only the reasoner expert (experts={tuple(experts)}); pass gen all False")
        gen_base, clean = flat, ~flat  # the base weights' tokens, once the adapted ones are taken out
        masks = {}
        for site, marked in (adapt or {}).items():
            ada = marked.expand(gen.shape).reshape(-1)
            masks[("und", site)], clean = clean & ada, clean & ~ada
        for site, marked in (inverse or {}).items():
            inv = marked.expand(gen.shape).reshape(-1)
            masks[("gen", site)], gen_base = gen_base & inv, gen_base & ~inv
            if inverse_context:
                masks[("und", site)], clean = clean & inv, clean & ~inv
        masks[("gen", None)], masks[("und", None)] = gen_base, clean
        self.ways = {way: m.nonzero().squeeze(1) for way, m in masks.items() if bool(m.any())}

    def __call__(self, x: torch.Tensor, f) -> torch.Tensor:
        """x [B, L, Din] -> [B, L, Dout]: f(expert, site) is the function each way's tokens go through."""
        flat = x.reshape(-1, x.shape[-1])
        if len(self.ways) <= 1:  # one way holds every token: no gather or scatter (the same numbers, fewer copies)
            return f(*next(iter(self.ways), ("und", None)))(flat).reshape(*self.shape, -1)
        parts = [(idx, f(*way)(flat[idx])) for way, idx in self.ways.items()]
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


class LoRA(nn.Module):
    """A low-rank update x [N, In] -> B A x [N, Out]; B starts at zero, so the adapted layer starts as the base one."""

    def __init__(self, d_in: int, d_out: int, rank: int):
        super().__init__()
        self.A = nn.Parameter(torch.randn(rank, d_in) / d_in**0.5)
        self.B = nn.Parameter(torch.zeros(d_out, rank))

    def forward(self, x):
        return F.linear(F.linear(x, self.A), self.B)


class Expert(nn.Module):
    """One expert's share of a layer; `adapters` {site: rank} adds a LoRA of that rank on each projection, held as
    that site (the reasoner's question adapter is `lora`, a world's own `lora_{world}`, either expert's
    inverse-dynamics adapters `inverse` and `inverse_{slot}`). `over` {site: base site}: that site's update adds to
    the base site's (a world's own question adapter is a low-rank update on top of the shared one)."""

    def __init__(self, width: int, heads: int, hidden: int, adapters: dict[str, int] | None = None,
                 over: dict[str, str] | None = None):
        super().__init__()
        self.over = dict(over or {})
        self.norm1 = RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_norm = RMSNorm(width // heads)
        self.k_norm = RMSNorm(width // heads)
        self.proj = nn.Linear(width, width, bias=False)
        self.norm2 = RMSNorm(width)
        self.mlp = SwiGLU(width, hidden)
        for site, rank in (adapters or {}).items():
            if rank:
                setattr(self, site, nn.ModuleDict({
                    "qkv": LoRA(width, 3 * width, rank), "proj": LoRA(width, width, rank),
                    "gate_up": LoRA(width, 2 * hidden, rank), "down": LoRA(hidden, width, rank)}))

    def _linear(self, layer: nn.Linear, name: str, x, site: str | None):
        if not site:
            return layer(x)
        y = layer(x) + getattr(self, site)[name](x)
        return y + getattr(self, self.over[site])[name](x) if site in self.over else y

    def qkv_normed(self, x, heads: int, site: str | None = None):
        """x [N, D] -> q, k, v [N, H, Dh] with q and k RMS-normalised per head."""
        q, k, v = self._linear(self.qkv, "qkv", self.norm1(x), site).unflatten(-1, (3, heads, -1)).unbind(-3)
        return torch.cat([self.q_norm(q), self.k_norm(k), v], dim=-1)

    def out(self, a, site: str | None = None):
        return self._linear(self.proj, "proj", a, site)

    def ffn(self, x, site: str | None = None):
        gate, up = self._linear(self.mlp.gate_up, "gate_up", self.norm2(x), site).chunk(2, dim=-1)
        return self._linear(self.mlp.down, "down", F.silu(gate) * up, site)


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
    def __init__(self, width: int, heads: int, hidden: int, experts: tuple[str, ...] = EXPERTS, adapter: int = 0,
                 gen_adapter: int = 0, context_adapter: int = 0, inverse_sites: tuple[str, ...] = ("inverse",),
                 reason_sites: tuple[str, ...] = ("lora",), own_rank: int = 0):
        super().__init__()
        self.heads = heads
        own = reason_sites[1:]  # worlds' own question adapters: updates on top of the shared `lora`
        self.und = Expert(width, heads, hidden, {"lora": adapter, **{s: own_rank or adapter for s in own},
                                                 **{s: context_adapter for s in inverse_sites}},
                          over={s: "lora" for s in own})
        if "gen" in experts:
            self.gen = Expert(width, heads, hidden, {s: gen_adapter for s in inverse_sites})

    def forward(self, x, route: Router, cos, sin, mask, past: LayerCache | None, keep: bool = False):
        """x [B, L, D] -> (x [B, L, D], the past's and these tokens' K/V [B, H, Lc + L, Dh] if keep, else None)."""
        H = self.heads
        experts = {"und": self.und, "gen": getattr(self, "gen", None)}  # gen is absent in a reasoner-only MoT
        qkv = route(x, lambda e, site: lambda t: experts[e].qkv_normed(t, H, site).flatten(1))
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
        x = x + route(a, lambda e, site: lambda t: experts[e].out(t, site))
        x = x + route(x, lambda e, site: lambda t: experts[e].ffn(t, site))
        return x, new


class MoT(nn.Module):
    """experts: ("und", "gen") for the omnimodal model, ("und",) for a reasoner-only decoder (no generator weights);
    adapter: rank of the reasoner's LoRA (0: none); gen_adapter: rank of the generator's inverse-dynamics LoRA (0:
    none); context_adapter: rank of the reasoner's inverse-dynamics LoRA (0: none; needs gen_adapter); inverse_sites:
    the inverse-dynamics adapters each expert holds at those ranks (the shared `inverse`, then embodiments' own);
    reason_sites: the question adapters the reasoner holds (the shared `lora` at `adapter`'s rank, then worlds' own
    at own_rank, 0: the same, each an update on top of the shared one)."""

    def __init__(self, width: int, depth: int, heads: int, hidden: int, rope_theta: float = 10000.0,
                 experts: tuple[str, ...] = EXPERTS, adapter: int = 0, gen_adapter: int = 0, context_adapter: int = 0,
                 inverse_sites: tuple[str, ...] = ("inverse",), reason_sites: tuple[str, ...] = ("lora",),
                 own_rank: int = 0):
        super().__init__()
        experts = tuple(experts)
        if experts not in (EXPERTS, ("und",)):
            raise ValueError(f"experts: expected {EXPERTS} or ('und',), got {experts}")
        if gen_adapter and "gen" not in experts:
            raise ValueError(f"gen_adapter: a reasoner-only backbone has no generator to adapt, got rank {gen_adapter}")
        if context_adapter and not gen_adapter:
            raise ValueError(f"context_adapter: the reasoner's inverse-dynamics adapter (rank {context_adapter}) serves "
                             "the generator's: give gen_adapter too")
        self.heads, self.rope_theta, self.experts, self.adapter = heads, rope_theta, experts, adapter
        self.gen_adapter, self.context_adapter = gen_adapter, context_adapter
        self.layers = nn.ModuleList(Layer(width, heads, hidden, experts, adapter, gen_adapter, context_adapter,
                                          tuple(inverse_sites), tuple(reason_sites), own_rank) for _ in range(depth))
        self.norm_und = RMSNorm(width)
        if "gen" in experts:
            self.norm_gen = RMSNorm(width)

    def forward(self, x, gen, group, valid, pos, cache: Cache | None = None, keep_cache: bool = False,
                attn_mask: torch.Tensor | None = None, adapt: dict | torch.Tensor | bool | None = None,
                inverse: dict[str, torch.Tensor] | None = None):
        """x [B, L, D] embedded tokens; gen/valid bool [B, L]; group int [B, L]; pos [B, L, 3].

        cache: K/V of context tokens already run (the tokens in x then attend them too).
        keep_cache: also return the Cache of the past and x's K/V (x must be context: its K/V cannot depend on later tokens).
        attn_mask: bool [B or 1, 1, L, Lc + L], True = may attend; replaces the group rule (padding keys stay
            unattended). The groups still go into the returned Cache for later tokens' masks.
        adapt: bool, or bool [B, L] / [B, 1]: these clean tokens run the reasoner through its adapter (ignored
            without one); or {site: bool [B, L] / [B, 1]}: through that question adapter (`lora` the shared, a
            world's own `lora_{world}`). A cache holds the K/V of whichever weights made it: continue it with the
            same `adapt`.
        inverse: {site: bool [B, 1]} (WorldModel.inverse_samples): these samples (inverse dynamics) take that site's
            inverse-dynamics adapters: their noisy tokens the generator's (ignored without one), their clean tokens the
            reasoner's where there is one (context_adapter). Without that a cache serves either; with it, continue a
            cache with the same samples marked as made it.
        -> (hidden [B, L, D] after the final norm of each token's expert, Cache or None)
        """
        if not self.adapter or adapt is None or adapt is False:
            adapt = None
        elif not isinstance(adapt, dict):
            adapt = {"lora": torch.ones_like(gen) if adapt is True else adapt}
        route = Router(gen, self.experts, adapt, inverse if self.gen_adapter else None, bool(self.context_adapter))
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
        x = route(x, lambda e, site: self.norm_und if e == "und" else self.norm_gen)
        return x, (Cache(kept, k_group, k_valid) if keep_cache else None)
