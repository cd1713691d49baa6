"""The world model: modality adapters around the MoT backbone.

Legend: B batch, L tokens, D width, V value width, N selected tokens,
S embodiment slots, A padded action width (cfg.max_action_dim).

  tokens (sequence.Tokens) --embed--> [B, L, D] --MoT--> [B, L, D] --heads--> values [B, L, V]

Embedding: a learned embedding per token kind, plus
  text    BPE id embedding
  vision  Linear(C·ph·pw -> D) of a latent patch
  audio   Linear(Ca·ap -> D) of audio latent frames
  action  per-embodiment Linear(A -> D) of the zero-padded action
and, on noisy tokens only, the timestep embedding of their noise level
(Cosmos 3 adds it to the noisy tokens instead of AdaLN) and, on noisy vision
tokens with config.frame_condition, Linear(C·ph·pw -> D) of the last given
frame's patch at the same place (Stable Video Diffusion's conditioning frame)
and a per-embodiment Linear(cond_rows·A -> D) of the actions since it
(sequence.py `cond`); both zero-initialised, so a checkpoint without them starts unchanged. With
config.pixel_cell, clean vision tokens (a question's video, a generator sample's given frames) also add a
small MLP of the pooled pixels they carry after the latent patch (the reasoner weights' understanding
encoder; bias-free, so tokens without pixels add nothing, and its
output layer zero-initialised, so a checkpoint without it starts unchanged). With config.reason_adapter too,
the pixel view is part of the adapter's path: only adapted tokens (a question's) read it, so training it with
the adapter leaves every generator output as it was. A world named in config.reason_own has a question adapter of
its own (site `lora_{world}`: a low-rank update on top of the shared one, zero at the start), which the questions
marked with that world take (tok.world): one world's answers are taught while every other world's stay bit for
bit. With config.inverse_adapter, the noisy tokens of a sample
that generates actions and nothing else (inverse dynamics: the policy also generates frames, forward dynamics no
actions) run the generator through its own adapter, so inverse dynamics can be taught alone; with
config.inverse_context too, such a sample's clean tokens (its prompt and given frames) run the reasoner through an
adapter of inverse dynamics' own, so it reads its frames its own way (its context cache is its own:
`encode_context(..., inverse=...)`). An embodiment named in config.inverse_own has both adapters of its own
(site `inverse_{slot}`), so one robot's inverse dynamics is taught while the others' stay bit for bit. The heads
read the generator's final hidden states back to values (the schedule's network output: velocity for rectified
flow) for noisy tokens only. The reasoner's text head reads the reasoner's final hidden states to next-token logits
(text out).
"""

from __future__ import annotations

import torch
from torch import nn

from kinema.model.config import WorldModelConfig
from kinema.model.mot import MoT, Cache
from kinema.model.sequence import ACTION, AUDIO, TEXT, VISION, Tokens
from kinema.nn.timestep import TimestepEmbedding, sinusoidal


class DomainLinear(nn.Module):
    """A Linear layer per embodiment slot: x [N, In] with slot [N] -> [N, Out]."""

    def __init__(self, slots: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(slots, d_in, d_out) / d_in**0.5)
        self.bias = nn.Parameter(torch.zeros(slots, d_out))

    def forward(self, x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(len(x), self.weight.shape[-1])
        for s in slot.unique().tolist():  # a batch holds one or two embodiments: loop, do not gather weights per row
            idx = (slot == s).nonzero().squeeze(1)
            out = out.index_copy(0, idx, (x[idx] @ self.weight[s].to(x.dtype) + self.bias[s].to(x.dtype)))
        return out


class LossLogVariance(nn.Module):
    """EDM's learned uncertainty (Karras et al. 2024, EDM2; REFERENCE §2): noise level [B] -> log-variance u [B],
    sinusoidal features of the level through one linear layer, so the loss weights itself per noise level."""

    def __init__(self, features: int = 128):
        super().__init__()
        self.features = features
        self.out = nn.Linear(features, 1)

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        return self.out(sinusoidal(level.float() * 1000.0, self.features)).squeeze(-1)


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig):
        super().__init__()
        c = self.config = config
        D = c.width
        self.kind_embed = nn.Embedding(5, D)
        self.text_embed = nn.Embedding(c.vocab_size, D)
        self.vision_in = nn.Linear(c.vision_dim, D)
        self.audio_in = nn.Linear(c.audio_dim, D)
        self.action_in = DomainLinear(c.max_embodiments, c.max_action_dim, D)
        self.time_embed = TimestepEmbedding(D)
        self.pixel_in = nn.Sequential(nn.Linear(c.pixel_dim, D, bias=False), nn.GELU(),
                                      nn.Linear(D, D, bias=False)) if c.pixel_cell else None
        self.frame_in = nn.Linear(c.vision_dim, D) if c.frame_condition else None
        self.moved_in = DomainLinear(c.max_embodiments, c.cond_rows * c.max_action_dim, D) if c.frame_condition else None
        self.backbone = MoT(D, c.depth, c.heads, c.hidden, c.rope_theta, adapter=c.reason_adapter,
                            gen_adapter=c.inverse_adapter, context_adapter=c.inverse_context,
                            inverse_sites=c.inverse_sites, reason_sites=c.reason_sites or ("lora",),
                            own_rank=c.reason_own_rank)
        self.vision_out = nn.Linear(D, c.vision_dim)
        self.audio_out = nn.Linear(D, c.audio_dim)
        self.action_out = DomainLinear(c.max_embodiments, D, c.max_action_dim)
        self.text_out = nn.Linear(D, c.vocab_size, bias=False)
        self.loss_logvar = LossLogVariance() if c.loss_uncertainty else None
        self.apply(init_weights)
        for head in (self.vision_out, self.audio_out):  # DiT: zero heads start as "predict zero"
            nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
        nn.init.zeros_(self.action_out.weight)
        if self.pixel_in is not None:
            nn.init.zeros_(self.pixel_in[2].weight)
        if self.loss_logvar is not None:  # u = 0: the plain loss until it learns
            nn.init.zeros_(self.loss_logvar.out.weight), nn.init.zeros_(self.loss_logvar.out.bias)
        if self.frame_in is not None:
            nn.init.zeros_(self.frame_in.weight), nn.init.zeros_(self.frame_in.bias)
            nn.init.zeros_(self.moved_in.weight)

    def embed(self, tok: Tokens, level: torch.Tensor, adapt: torch.Tensor | bool | None = None) -> torch.Tensor:
        """tokens [B, L] and per-token noise level [B, L] (read on noisy tokens) -> [B, L, D].
        adapt (as MoT's): the samples that run the reasoner's adapter; with one, only they read the pixel view."""
        B, L = tok.kind.shape
        kind, value = tok.kind.reshape(-1), tok.value.reshape(B * L, -1)
        x = self.kind_embed(kind)
        c = self.config
        adapters = {
            TEXT: lambda i: self.text_embed(tok.text.reshape(-1)[i]),
            VISION: lambda i: self.vision_in(value[i, : c.vision_dim]),
            AUDIO: lambda i: self.audio_in(value[i, : c.audio_dim]),
            ACTION: lambda i: self.action_in(value[i, : c.max_action_dim], tok.domain.reshape(-1)[i]),
        }
        for k, adapter in adapters.items():
            idx = (kind == k).nonzero().squeeze(1)
            if len(idx):
                x = x.index_add(0, idx, adapter(idx).to(x.dtype))
        if self.pixel_in is not None:
            clean = ~tok.gen & (tok.kind == VISION)
            if c.reason_adapter:
                clean = clean & (adapt if isinstance(adapt, torch.Tensor) else torch.tensor(bool(adapt)))
            idx = clean.reshape(-1).nonzero().squeeze(1)
            if len(idx):
                pix = value[idx, c.vision_dim : c.vision_dim + c.pixel_dim]
                x = x.index_add(0, idx, self.pixel_in(pix.to(self.pixel_in[0].weight.dtype)).to(x.dtype))
        noisy = tok.gen.reshape(-1).nonzero().squeeze(1)
        if len(noisy):
            x = x.index_add(0, noisy, self.time_embed(level.reshape(-1)[noisy]).to(x.dtype))
        if self.frame_in is not None:
            idx = (tok.gen.reshape(-1) & (kind == VISION)).nonzero().squeeze(1)
            if len(idx):
                cond = tok.cond.reshape(B * L, -1)[idx]
                x = x.index_add(0, idx, self.frame_in(cond[:, : c.vision_dim]).to(x.dtype))
                x = x.index_add(0, idx, self.moved_in(cond[:, c.vision_dim :], tok.domain.reshape(-1)[idx]).to(x.dtype))
        return x.reshape(B, L, -1)

    def heads(self, tok: Tokens, h: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, D] -> values [B, L, V] for noisy tokens (zero elsewhere)."""
        B, L = tok.kind.shape
        c = self.config
        h = h.reshape(B * L, -1)
        kind, noisy = tok.kind.reshape(-1), tok.gen.reshape(-1)
        out = h.new_zeros(B * L, c.value_dim, dtype=torch.float32)
        heads = {
            VISION: lambda i: self.vision_out(h[i]),
            AUDIO: lambda i: self.audio_out(h[i]),
            ACTION: lambda i: self.action_out(h[i], tok.domain.reshape(-1)[i]),
        }
        for k, head in heads.items():
            idx = ((kind == k) & noisy).nonzero().squeeze(1)
            if len(idx):
                y = head(idx).float()
                out[idx, : y.shape[1]] = y
        return out.reshape(B, L, -1)

    def forward(self, tok: Tokens, level: torch.Tensor, cache: Cache | None = None, text_at: torch.Tensor | None = None,
                logvar: bool = False):
        """Values for the noisy tokens of `tok` [B, L, V]; with `cache`, tok holds only tokens after the cached context.
        text_at bool [B, L]: also return the next-token logits [N, vocab] at those (reasoner) tokens. A sample
        with scored text and nothing to denoise is a question: it runs the reasoner's adapter (as `reason` does).
        logvar (training, config.loss_uncertainty): also return each sample's loss log-variance [B] at its noise
        level (level[:, 0]), last; computed here so distributed wrappers see it used in the forward."""
        adapt = None if text_at is None else (text_at.any(1) & ~tok.gen.any(1))[:, None]
        h, _ = self.backbone(self.embed(tok, level, adapt), tok.gen, tok.group, tok.valid, tok.pos, cache=cache,
                             adapt=self.question_sites(tok, adapt), inverse=self.inverse_samples(tok))
        out = (self.heads(tok, h),) + (() if text_at is None else (self.text_out(h[text_at]),))
        if logvar:
            if self.loss_logvar is None:
                raise ValueError("logvar: this model has no learned loss uncertainty (config.loss_uncertainty)")
            out += (self.loss_logvar(level[:, 0]),)
        return out[0] if len(out) == 1 else out

    def question_sites(self, tok: Tokens, adapt: torch.Tensor | bool | None):
        """The tokens that run the reasoner's question adapters (adapt: bool, or bool [B, 1] / [B, L]), split by the
        world each question is marked with (tok.world): {site: bool [B, L]}, the shared `lora` or a world's own
        `lora_{world}` (config.reason_own); without own worlds `adapt` as given (the shared adapter takes them all)."""
        if adapt is None or adapt is False or not self.config.reason_own:
            return adapt
        base = torch.ones_like(tok.gen) if adapt is True else adapt.expand_as(tok.gen)
        return {site: base & (tok.world == k) for k, site in enumerate(self.config.reason_sites)}

    def reason_own_parameters(self, worlds: tuple[str, ...]):
        """(name, parameter) of these worlds' own question adapters: training them alone leaves every other world's
        answers and every generator output exactly as they were."""
        sites = tuple(f".lora_{w}." for w in worlds)
        return ((name, p) for name, p in self.named_parameters() if any(s in name for s in sites))

    def inverse_samples(self, tok: Tokens) -> dict[str, torch.Tensor] | None:
        """{site: bool [B, 1]}: the samples whose noisy tokens are all actions (inverse dynamics), which take the
        inverse adapters, by site: an embodiment in config.inverse_own its own (`inverse_{slot}`), the others the
        shared `inverse`; None without adapters."""
        if not self.config.inverse_adapter:
            return None
        inverse = (tok.gen.any(1) & ~(tok.gen & (tok.kind != ACTION)).any(1))[:, None]
        sites = {"inverse": inverse}
        if self.config.inverse_own:
            slot = torch.where(tok.gen, tok.domain, -1).amax(1, keepdim=True)  # [B, 1]: the sample's embodiment
            for site in self.config.inverse_sites[1:]:
                own = inverse & (slot == int(site.removeprefix("inverse_")))
                sites[site], sites["inverse"] = own, sites["inverse"] & ~own
        return sites

    def inverse_parameters(self, sites: tuple[str, ...] | None = None):
        """(name, parameter) of the inverse-dynamics adapters (the generator's and, with config.inverse_context, the
        reasoner's) of these sites (None: all): training these alone leaves every other mode's output, the
        reasoner's answers and the other sites' embodiments exactly as they were."""
        sites = self.config.inverse_sites if sites is None else sites
        return ((name, p) for name, p in self.named_parameters() if any(f".{s}." in name for s in sites))

    def reason(self, tok: Tokens, cache: Cache | None = None) -> tuple[torch.Tensor, Cache]:
        """Clean tokens (after the cached ones) -> (next-token logits at the last token [B, vocab], the grown cache)."""
        h, cache = self.reason_states(tok, cache, keep_cache=True)
        return self.text_out(h[:, -1]).float(), cache

    def reason_states(self, tok: Tokens, cache: Cache | None = None, keep_cache: bool = False):
        """The reasoner's final hidden states [B, L, D] of clean tokens (through its adapter, if it has one),
        and with keep_cache the grown cache."""
        if tok.gen.any():
            raise ValueError("reason takes clean (context) tokens only; noisy tokens belong to the generator")
        return self.backbone(self.embed(tok, torch.zeros_like(tok.pos[..., 0]), adapt=True), tok.gen, tok.group,
                             tok.valid, tok.pos, cache=cache, keep_cache=keep_cache, adapt=self.question_sites(tok, True))

    @torch.no_grad()
    def encode_context(self, tok: Tokens, inverse: dict[str, torch.Tensor] | None = None) -> Cache:
        """Run clean context tokens once and keep their K/V for every denoising step. inverse {site: bool [B, 1]}:
        the samples whose noisy tokens will be inverse dynamics' (`inverse_samples` of them), whose context goes
        through their site's adapter where the model has one (config.inverse_context)."""
        if tok.gen.any():
            raise ValueError("encode_context takes clean context tokens only")
        _, cache = self.backbone(self.embed(tok, torch.zeros_like(tok.pos[..., 0])), tok.gen, tok.group, tok.valid,
                                 tok.pos, keep_cache=True, inverse=inverse)
        return cache

    def adapter_parameters(self, first_layers: int | None = None):
        """(name, parameter) of what only the reasoner's answers depend on: its adapter, pixel view (which only
        adapted tokens read), final norm and text head. Training these alone leaves every generator output exactly
        as it was. first_layers=N: the adapter of the first N layers only."""
        for name, p in self.named_parameters():
            if first_layers is not None:
                if ".lora." in name and int(name.split(".")[2]) < first_layers:  # backbone.layers.{i}.und.lora...
                    yield name, p
            elif ".lora." in name or name.startswith(("text_out.", "backbone.norm_und.", "pixel_in.")):
                yield name, p

    def reasoner_parameters(self):
        """(name, parameter) of everything a clean (context) token's hidden state depends on: the input adapters
        and the reasoner expert, plus the text head. Context never attends noisy tokens, so with these frozen
        the reasoner's answers stay exactly as they were while the generator trains."""
        shared = ("kind_embed.", "text_embed.", "vision_in.", "pixel_in.", "audio_in.", "action_in.", "text_out.",
                  "backbone.norm_und.")
        for name, p in self.named_parameters():
            if name.startswith(shared) or ".und." in name:
                yield name, p

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(m: nn.Module) -> None:
    """N(0, 0.02) for linear and embedding weights, zero biases (GPT-2's init)."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)
