"""Lossless coding of DV code indices with the autoregressive world model as the entropy model.

Legend: t latent frames, h/w latent rows/columns, L code tokens (t·h·w), V vocabulary (64,000 codes).

As stored, a DV token costs log2(64,000) = 15.97 bits whatever it holds. H.264 entropy-codes what it writes
(CABAC), so a like-for-like rate entropy-codes the DV tokens too. A range coder (constriction) codes each index
under the AR model's next-code distribution given the indices before it (raster order, frame by frame, as the
model was trained; no actions and no text, only what a decoder has), and the first, with nothing before it,
under the uniform distribution. The decoder runs the same model token by token and recovers every index.

Exactness: `compress` computes the probabilities with exactly the calls `decompress` makes (one token a forward
against the KV cache, fp32), so both quantise identical numbers into the coder's fixed-point table. Decoding
elsewhere needs the same weights, dtype and kernels, as any entropy model computed in floating point does.

A stream is HEADER (t, h, w, fps) then the coder's 32-bit words. `code_bits` / `ideal_bits` are what the model
promises (teacher-forced, a batch of clips a forward), which the coded length meets to within a few words a clip.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import torch

from kinema.model.autoregressive import ARWorldModel, check_indices, sequence

HEADER = struct.Struct("<3Hf")  # t, h, w, fps


def _model_family():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def _next_probabilities(model: ARWorldModel, tok, p: int, kv):
    """Feed code token p (tok [1, L]) against the cache; -> (P(token p + 1) float64 [V], cache)."""
    if kv is None:
        h, kv = model(tok.slice(0, 1), keep_cache=True)
        kv = kv.reserve(tok.index.shape[1])
    else:
        h, kv = model(tok.slice(p, p + 1), cache=kv, keep_cache=True)
    probs = torch.softmax(model.logits(h[0, -1]).double(), -1)
    return probs.cpu().numpy(), kv


@torch.no_grad()
def compress(model: ARWorldModel, indices: torch.Tensor, fps: float = 16.0) -> bytes:
    """indices int [t, h, w] (one clip of DV codes) -> bytes (HEADER + range-coded indices)."""
    import constriction

    check_indices(model.config, indices[None], "indices", dims=4)
    t, h, w = indices.shape
    tok = sequence(model.config, indices[None].cpu(), fps=fps).to(model.codebook.device)  # codes only: no actions
    symbols = tok.index[0].cpu().numpy().astype(np.int32)
    V = int(model.codebook.shape[0])
    enc = constriction.stream.queue.RangeEncoder()
    family = _model_family()
    enc.encode(symbols[:1], family, np.full((1, V), 1.0 / V))
    kv = None
    for p in range(len(symbols) - 1):
        probs, kv = _next_probabilities(model, tok, p, kv)
        enc.encode(symbols[p + 1 : p + 2], family, probs[None])
    return HEADER.pack(t, h, w, fps) + enc.get_compressed().astype("<u4").tobytes()


@torch.no_grad()
def decompress(model: ARWorldModel, data: bytes) -> torch.Tensor:
    """bytes from `compress` (with the same model) -> indices int64 [t, h, w]."""
    import constriction

    if len(data) < HEADER.size or (len(data) - HEADER.size) % 4:
        raise ValueError(f"data: expected a {HEADER.size}-byte header and whole 32-bit words, got {len(data)} bytes")
    t, h, w, fps = HEADER.unpack_from(data)
    words = np.frombuffer(data, dtype="<u4", offset=HEADER.size).astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    family = _model_family()
    V = int(model.codebook.shape[0])
    tok = sequence(model.config, torch.zeros(1, t, h, w, dtype=torch.long), fps=fps).to(model.codebook.device)
    tok.index[0, 0] = int(dec.decode(family, np.full((1, V), 1.0 / V))[0])
    kv = None
    for p in range(tok.index.shape[1] - 1):
        probs, kv = _next_probabilities(model, tok, p, kv)
        tok.index[0, p + 1] = int(dec.decode(family, probs[None])[0])
    return ARWorldModel.codes_of(tok, t, h, w)[0].cpu()


@torch.no_grad()
def code_bits(model: ARWorldModel, indices: torch.Tensor, fps: float = 16.0, batch: int = 16) -> torch.Tensor:
    """Each code's cost under the model, bits [B, L] for indices int [B, t, h, w] in sequence (raster) order: the
    first log2(V), every later one -log2 P(index | indices before it) (teacher-forced, one forward a batch)."""
    check_indices(model.config, indices, "indices", dims=4)
    V = int(model.codebook.shape[0])
    out = []
    for s in range(0, len(indices), batch):
        tok = sequence(model.config, indices[s : s + batch].cpu(), fps=fps).to(model.codebook.device)
        h, _ = model(tok)
        for hb, ib in zip(h[:, :-1], tok.index[:, 1:]):  # one clip's [L-1, V] logits at a time
            logp = torch.log_softmax(model.logits(hb).float(), -1)
            nats = -logp.gather(-1, ib[:, None])[:, 0].double().cpu()
            out.append(torch.cat([torch.tensor([math.log2(V)], dtype=torch.float64), nats / math.log(2)]))
    return torch.stack(out)


def ideal_bits(model: ARWorldModel, indices: torch.Tensor, fps: float = 16.0, batch: int = 16) -> torch.Tensor:
    """The code length the model promises, bits per clip [B] (code_bits summed): what `compress` meets."""
    return code_bits(model, indices, fps, batch).sum(-1)
