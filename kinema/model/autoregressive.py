"""The autoregressive world model (Cosmos-1 style): a Llama-style decoder over the DV tokenizer's FSQ codes.

Legend: B batch, L tokens, Lc cached tokens, D width, t latent frames, h/w latent rows/columns, R action
rows, A padded action width (cfg.max_action_dim), V vocabulary (64,000 codes), F code dims (6), r head rank.

One clip is one causal sequence (each token its own attention group, increasing):

    frame 0 codes (h·w, raster order) | actions of video frames 1-4 | frame 1 codes | actions 5-8 | frame 2 ...

Action row r belongs to video frame r + 1 (as in kinema.model.sequence); latent frame k >= 1 holds video
frames 4k-3 .. 4k, so its four action rows come right before its codes: the model reads what the robot does
before it predicts what that causes. Clips without actions are codes only. Positions (3D RoPE over the
reasoner-only MoT, plus a 3D sinusoidal absolute embedding of the same positions):

    code (k, i, j)   (k·tc/fps · positions_per_second, i, j)   one temporal unit per latent frame at ref_fps
    action row r     ((r + 1)/fps · positions_per_second, 0, 0)

Vocabulary without a 64,000-row table (the size budget of a CPU model): a code's input embedding is an MLP
of its 6-D FSQ vector, and the output head is

    logits [V] = proj(h) [r] @ W.T + bias,   W [V, r] = MLP(code vector of every index)

so the weight matrix is generated from the code grid (codes that differ in one FSQ digit start out close)
while the softmax is still exact over all 64,000 codes, trained with CE + z-loss (kinema.model.lm_loss,
computed fused and chunked by kinema.model.lm_head_loss). W is made once per optimizer step in training and
cached at inference.

`generate` prefills the given latent frames and decodes the rest token by token against a KV cache
(MoT keep_cache with a reserved buffer), or recomputes the whole prefix at every token (cache=False, the
reference the cache is tested and benchmarked against). Medusa decoding is in kinema/model/medusa.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from kinema.model.ar_config import KIND, PRESETS, ARConfig, get_preset  # noqa: F401  (re-exported)
from kinema.model.decoding import SamplingParams, sample_next
from kinema.model.lm_head_loss import head_lm_loss
from kinema.model.mot import Cache, MoT
from kinema.model.world_model import DomainLinear, init_weights

AR_SAMPLING = SamplingParams(temperature=1.0, top_p=0.8)  # REFERENCE §3 inference defaults
LOSS_CHUNK = 128  # scored tokens per logits chunk (kinema.model.lm_head_loss.CHUNK)


@dataclass
class ARTokens:
    """One clip ([L, ...]) or a padded batch ([B, L, ...]) in sequence order."""

    index: torch.Tensor      # int64, FSQ index of a code token (0 on other tokens)
    is_action: torch.Tensor  # bool
    action: torch.Tensor     # float32 [..., A], the normalised action of an action token (0 elsewhere)
    domain: torch.Tensor     # int64, embodiment slot of an action token
    pos: torch.Tensor        # float32 [..., 3] (t, h, w)
    valid: torch.Tensor      # bool, False = padding
    group: torch.Tensor      # int64, the token's place in the sequence: causal attention
    target: torch.Tensor     # int64, the next token's index when it is a code, else -1 (not scored)

    def slice(self, a: int, b: int) -> ARTokens:
        """Tokens a..b-1 along the sequence axis (views)."""
        return ARTokens(**{f.name: getattr(self, f.name)[..., a:b] if getattr(self, f.name).dim() <= self.index.dim()
                           else getattr(self, f.name)[..., a:b, :] for f in fields(self)})

    def to(self, device) -> ARTokens:
        return ARTokens(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.index.shape[-1]


def layout(t: int, h: int, w: int, with_actions: bool, tc: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each token of a clip of t latent frames sits -> (slot [L], is_action [L]): a code token's slot is
    its place in the flattened codes [t·h·w], an action token's is its action row."""
    slots, acts = [torch.arange(h * w)], [torch.zeros(h * w, dtype=torch.bool)]
    for k in range(1, t):
        if with_actions:
            slots.append(torch.arange(tc * (k - 1), tc * k))
            acts.append(torch.ones(tc, dtype=torch.bool))
        slots.append(torch.arange(k * h * w, (k + 1) * h * w))
        acts.append(torch.zeros(h * w, dtype=torch.bool))
    return torch.cat(slots), torch.cat(acts)


def sequence(config: ARConfig, indices: torch.Tensor, actions: torch.Tensor | None = None, domain: int = 0,
             fps: float = 16.0) -> ARTokens:
    """indices int [B, t, h, w] (or [t, h, w]) and normalised actions [B, R, dim] (or [R, dim]; R >= 4(t-1),
    row r of video frame r + 1) -> the clip's tokens [B, L] (or [L])."""
    single = indices.dim() == 3
    if single:
        indices = indices[None]
        actions = actions[None] if actions is not None else None
    check_indices(config, indices, "indices", dims=4)
    dev = indices.device  # built on the CPU (a few hundred tokens), moved once at the end
    indices = indices.cpu()
    actions = actions.cpu() if actions is not None else None
    B, t, h, w = indices.shape
    tc, A = config.temporal_compression, config.max_action_dim
    if fps <= 0:
        raise ValueError(f"fps: expected > 0, got {fps}")
    if actions is not None:
        if actions.dim() != 3 or actions.shape[0] != B:
            raise ValueError(f"actions: expected [{B}, R, dim] normalised rows, got {tuple(actions.shape)}")
        if actions.shape[1] < tc * (t - 1) or actions.shape[2] > A:
            raise ValueError(f"actions: expected at least {tc * (t - 1)} rows (4 per latent frame after the first) of "
                             f"at most {A} numbers, got {tuple(actions.shape[1:])}")
        if not 0 <= int(domain) < config.max_embodiments:
            raise ValueError(f"domain: expected an embodiment slot in [0, {config.max_embodiments}), got {domain}")
    slot, is_action = layout(t, h, w, actions is not None, tc)
    L = len(slot)
    code = ~is_action
    index = torch.zeros(B, L, dtype=torch.long)
    index[:, code] = indices.reshape(B, -1)[:, slot[code]].long()
    action = torch.zeros(B, L, A)
    if actions is not None:
        action[:, is_action, : actions.shape[2]] = actions[:, slot[is_action]].float()
    pps = config.positions_per_second
    frame = torch.where(is_action, slot + 1, (slot // (h * w)) * tc).float()  # the video frame a token shows
    row = torch.where(is_action, 0, slot % (h * w) // w).float()
    col = torch.where(is_action, 0, slot % w).float()
    pos = torch.stack([frame / fps * pps, row, col], -1)
    nxt_code = torch.cat([code[1:], torch.zeros(1, dtype=torch.bool)])
    target = torch.where(nxt_code, torch.cat([index[:, 1:], index[:, :1]], 1), -1)
    tok = ARTokens(index=index, is_action=is_action.expand(B, L).clone(), action=action,
                   domain=torch.where(is_action, int(domain), 0).expand(B, L).clone(),
                   pos=pos.expand(B, L, 3).clone(), valid=torch.ones(B, L, dtype=torch.bool),
                   group=torch.arange(L).expand(B, L).clone(), target=target)
    tok = tok.to(dev)
    return ARTokens(**{f.name: getattr(tok, f.name)[0] for f in fields(tok)}) if single else tok


def collate(samples: list[ARTokens], multiple: int = 16) -> ARTokens:
    """Pad clips [L] to the longest (rounded up to `multiple`): [B, L]; padding is never attended or scored."""
    L = -(-max(len(s) for s in samples) // multiple) * multiple
    out = {}
    for f in fields(ARTokens):
        rows = []
        for s in samples:
            x = getattr(s, f.name)
            pad = L - x.shape[0]
            fill = -1 if f.name == "target" else 0
            if f.name == "group":  # padding continues the order, so its rows are never the only keys a query has
                x = torch.cat([x, torch.arange(x.shape[0], L)])
            else:
                x = torch.cat([x, torch.full((pad, *x.shape[1:]), fill, dtype=x.dtype)])
            rows.append(x)
        out[f.name] = torch.stack(rows)
    return ARTokens(**out)


def check_indices(config: ARConfig, indices: torch.Tensor, name: str, dims: int) -> None:
    if not isinstance(indices, torch.Tensor) or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor of FSQ indices, got "
                         f"{getattr(indices, 'dtype', type(indices).__name__)}")
    if indices.dim() != dims:
        want = "[B, t, h, w]" if dims == 4 else f"{dims} dims"
        raise ValueError(f"{name}: expected {want} FSQ indices, got shape {tuple(indices.shape)}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= config.vocab_size):
        raise ValueError(f"{name}: FSQ indices must lie in [0, {config.vocab_size}), got "
                         f"[{int(indices.min())}, {int(indices.max())}]")


def code_grid(levels) -> torch.Tensor:
    """The code vector of every index, [V, F]: FSQ.indices_to_codes(arange(V)), without its range check (so a
    model can be built on the meta device)."""
    L = torch.tensor(levels)
    basis = torch.cumprod(torch.tensor((1,) + tuple(levels[:-1])), 0)
    digits = torch.arange(math.prod(levels))[:, None] // basis % L
    half = L // 2
    return (digits - half).float() / half


def sinusoid_3d(pos: torch.Tensor, width: int, gain: torch.Tensor) -> torch.Tensor:
    """pos [..., 3] -> [..., width]: sin/cos of each axis at width//6 frequencies, axis a scaled by gain[a]."""
    n = width // 6
    freq = 10000.0 ** (-torch.arange(n, device=pos.device, dtype=torch.float32) / max(n, 1))
    ang = pos.float()[..., None] * freq  # [..., 3, n]
    emb = torch.cat([ang.sin(), ang.cos()], -1) * gain.float()[:, None]  # [..., 3, 2n]
    return F.pad(emb.flatten(-2), (0, width - 6 * n))


class CodeHead(nn.Module):
    """h [..., D] -> logits [..., V] = proj(h) @ W.T + bias, with W [V, r] made by an MLP from the code vectors."""

    def __init__(self, width: int, rank: int, hidden: int, code_dim: int, vocab: int):
        super().__init__()
        self.proj = nn.Linear(width, rank, bias=False)
        self.code_mlp = nn.Sequential(nn.Linear(code_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                      nn.Linear(hidden, rank))
        self.bias = nn.Parameter(torch.zeros(vocab))  # per-code frequency: 64k numbers, exact unigram statistics
        self._cached: tuple | None = None

    def weight(self, codebook: torch.Tensor) -> torch.Tensor:
        """W [V, r]; without autograd it is cached until a code_mlp parameter changes (optimizer, load_state_dict)."""
        if torch.is_grad_enabled():
            return self.code_mlp(codebook)
        key = (torch.is_autocast_enabled(codebook.device.type), codebook.device) + tuple(
            (p._version, p.data_ptr()) for p in self.code_mlp.parameters())
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, self.code_mlp(codebook))
        return self._cached[1]

    def logits(self, u: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """u [..., r] (a projected hidden state) -> [..., V]"""
        flat = u.reshape(-1, u.shape[-1])
        out = torch.addmm(self.bias.to(u.dtype), flat, W.to(u.dtype).T)  # one pass over [N, V], not two
        return out.reshape(*u.shape[:-1], -1)

    @torch.no_grad()
    def decode_logits(self, u: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        """logits(u, W) for inference: [u, 1] @ [W | bias].T with the augmented matrix cached contiguous
        ([r + 1, V]): no bias pass over [N, V], and a third faster than addmm at decoding's N of 1 to 20."""
        key = (self.bias._version, self.bias.data_ptr(), u.dtype, u.device)
        W = self.weight(codebook)
        if getattr(self, "_aug", None) is None or self._aug[0] != key or self._aug[1] is not W:
            self._aug = (key, W, torch.cat([W, self.bias[:, None].to(W.dtype)], 1).T.contiguous().to(u.dtype))
        flat = u.reshape(-1, u.shape[-1])
        return (torch.cat([flat, flat.new_ones(len(flat), 1)], 1) @ self._aug[2]).reshape(*u.shape[:-1], -1)

    def forward(self, h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        return self.logits(self.proj(h), W)


class ARWorldModel(nn.Module):
    """Code/action embedding -> reasoner-only MoT (causal, 3D RoPE) -> CodeHead; optional Medusa heads."""

    def __init__(self, config: ARConfig):
        super().__init__()
        c = self.config = config
        D, V = c.width, c.vocab_size
        self.kind_embed = nn.Embedding(2, D)  # code, action
        self.code_in = nn.Sequential(nn.Linear(c.code_dim, c.embed_hidden), nn.SiLU(), nn.Linear(c.embed_hidden, D))
        self.action_in = DomainLinear(c.max_embodiments, c.max_action_dim, D)
        self.pos_gain = nn.Parameter(torch.full((3,), 0.1))  # the sinusoid enters small next to the code embedding
        self.backbone = MoT(D, c.depth, c.heads, c.hidden, c.rope_theta, experts=("und",))
        self.head = CodeHead(D, c.head_rank, c.head_hidden, c.code_dim, V)
        self.medusa = None
        if c.medusa_heads:
            from kinema.model.medusa import MedusaHeads  # medusa.py imports this module

            self.medusa = MedusaHeads(c.medusa_heads, D, c.head_rank)
        self.backbone.apply(init_weights)
        init_weights(self.head.proj), init_weights(self.kind_embed)
        self.register_buffer("codebook", code_grid(c.fsq_levels), persistent=False)  # [V, F]

    # ------------------------------------------------------------ forward

    def embed(self, tok: ARTokens) -> torch.Tensor:
        """tokens [B, L] -> [B, L, D]"""
        B, L = tok.index.shape
        x = self.code_in(self.codebook[tok.index])
        act = tok.is_action.reshape(-1).nonzero().squeeze(1)
        if len(act):
            a = self.action_in(tok.action.reshape(B * L, -1)[act], tok.domain.reshape(-1)[act])
            x = x.reshape(B * L, -1).index_copy(0, act, a.to(x.dtype)).reshape(B, L, -1)
        return x + self.kind_embed(tok.is_action.long()) + sinusoid_3d(tok.pos, x.shape[-1], self.pos_gain).to(x.dtype)

    def forward(self, tok: ARTokens, cache: Cache | None = None, keep_cache: bool = False,
                attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, Cache | None]:
        """tokens [B, L] (after the cached ones, if any) -> (hidden [B, L, D] after the final norm, Cache or None)."""
        return self.backbone(self.embed(tok), torch.zeros_like(tok.valid), tok.group, tok.valid, tok.pos, cache=cache,
                             keep_cache=keep_cache, attn_mask=attn_mask)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """hidden [..., D] -> next-code logits [..., V]"""
        if torch.is_grad_enabled():
            return self.head(h, self.head.weight(self.codebook))
        return self.head.decode_logits(self.head.proj(h), self.codebook)

    def lm_objective(self, h: torch.Tensor, target: torch.Tensor, chunk: int = LOSS_CHUNK) -> tuple[torch.Tensor, dict]:
        """CE + z-loss (kinema.model.lm_loss) of hidden [B, L, D] against target [B, L] (-1 = not scored), an
        exact softmax over all 64,000 codes, computed fused in chunks (kinema.model.lm_head_loss)."""
        sel = target >= 0
        if not sel.any():
            raise ValueError("target: no scored token in the batch (every target is -1)")
        u = self.head.proj(h[sel])
        W = self.head.weight(self.codebook)
        return head_lm_loss(u, W, self.head.bias, target[sel], self.config.z_weight, chunk)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ generation

    def prepare(self, context: torch.Tensor, num_latent_frames: int, actions, domain, fps) -> tuple[ARTokens, int]:
        """The whole clip's tokens (unknown codes 0) and the place of the first code to generate."""
        check_indices(self.config, context, "context", dims=4)
        B, tc, h, w = context.shape
        if not 1 <= tc < num_latent_frames:
            raise ValueError(f"num_latent_frames: expected more than the {tc} given latent frames, got "
                             f"{num_latent_frames}")
        dev = self.codebook.device
        full = torch.zeros(B, num_latent_frames, h, w, dtype=torch.long, device=dev)
        full[:, :tc] = context.to(dev)
        if actions is not None:
            actions = torch.as_tensor(actions, dtype=torch.float32, device=dev)
        tok = sequence(self.config, full, actions, domain, fps)
        first = int((~tok.is_action[0]).cumsum(0).eq(tc * h * w + 1).nonzero()[0])  # the first unknown code
        return tok, first

    @staticmethod
    def codes_of(tok: ARTokens, t: int, h: int, w: int) -> torch.Tensor:
        """The code tokens of a clip [B, L] back to indices [B, t, h, w]."""
        return tok.index[:, ~tok.is_action[0]].reshape(-1, t, h, w)

    @torch.no_grad()
    def generate(self, context: torch.Tensor, num_latent_frames: int, *, actions=None, domain: int = 0,
                 fps: float = 16.0, params: SamplingParams = AR_SAMPLING, cache: bool = True,
                 progress: bool = False) -> torch.Tensor:
        """Given latent frames context int [B, tc, h, w] -> all num_latent_frames [B, T, h, w] (the context copied).

        actions: normalised [B, R >= 4(T-1), dim] (row r of video frame r + 1) or None; domain: their slot.
        params: temperature 0 = greedy; top-p / top-k as kinema.model.decoding; params.seed seeds the sampler
        (params.max_new_tokens is not used: T decides how many codes come).
        cache=True: prefill once, then one token per forward against the KV cache; False: recompute the prefix.
        """
        from tqdm.auto import tqdm

        tok, first = self.prepare(context, num_latent_frames, actions, domain, fps)
        h, w = context.shape[2:]
        L = len(tok)
        todo = [p for p in range(first, L) if not bool(tok.is_action[0, p])]
        gen = torch.Generator(device=self.codebook.device).manual_seed(int(params.seed))
        kv, last, done = None, None, first
        for p in tqdm(todo, desc="decode", unit="tok", disable=not progress):
            if not cache:
                h_, _ = self(tok.slice(0, p))
                last = h_[:, -1]
            elif kv is None:  # prefill
                h_, kv = self(tok.slice(0, p), keep_cache=True)
                kv, last = kv.reserve(L), h_[:, -1]
            elif p > done:  # the last sampled code and any action rows before this one
                h_, kv = self(tok.slice(done, p), cache=kv, keep_cache=True)
                last = h_[:, -1]
            done = p
            tok.index[:, p] = sample_next(self.logits(last), params, gen)
        return self.codes_of(tok, num_latent_frames, h, w)


def load_model(path, device="cpu") -> ARWorldModel:
    """An ARWorldModel from a checkpoint folder (config.json + model.safetensors), fp32, eval mode."""
    from pathlib import Path

    from kinema.train.checkpoint import load_pretrained, load_state_strict

    raw, state = load_pretrained(path, expected_kind=KIND)
    try:
        config = ARConfig.from_dict(raw["model"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {path}: its config does not describe an autoregressive world model: {e}") from e
    model = ARWorldModel(config)
    load_state_strict(model, {k: v.float() for k, v in state.items()}, where=str(Path(path)))
    return model.to(device).eval()
