"""The autoregressive world model behind the evaluation interface (kinema.eval.predictor).

Legend: Tc context frames, Tf frames to predict, T window frames, t latent frames, h/w latent grid,
H/W frame size, A action dims.

`kinema eval physics --model checkpoints/ar-world-model-small` loads it through the loader registered in
kinema/model/__init__.py. predict: the last 1 + 4j <= 9 context frames -> DV codes -> the rest of a window
of at most 33 frames (the training clip: 9 latent frames) generated code by code with the KV cache (or Medusa,
greedy) -> DV decode. Longer futures roll out window after window, each conditioned on the last 9 frames so
far, re-encoded from pixels: the tokenizer's first latent frame codes one frame alone, so a window cannot
start from codes taken out of the middle of another. Actions (tabletop), when the request has them, are the
context tokens of their embodiment, normalised with the training statistics saved in the checkpoint.

It is also a plausibility judge (kinema.eval.judge; `kinema eval plausibility --model
checkpoints/ar-world-model-small`): ARSurpriseJudge scores a video by how well the model predicts its codes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from kinema.model import embodiments as emb
from kinema.model.autoregressive import AR_SAMPLING, ARWorldModel, load_model
from kinema.model.carry import DEFAULT_CARRY, carry_default, carry_detail, check_gate
from kinema.model.decoding import SamplingParams


class ARWorldModelPredictor:
    uses_oracle = False

    def __init__(self, model: ARWorldModel, video_tokenizer, *, params: SamplingParams = AR_SAMPLING,
                 medusa: bool = False, max_context: int = 9, name: str = "ar_world_model", progress: bool = False,
                 carry: bool | None = None, carry_gate: float | None = None):
        if medusa and params.temperature != 0:
            raise ValueError("medusa: Medusa decoding here is greedy; pass params with temperature=0")
        if medusa and model.medusa is None:
            raise ValueError("medusa: this checkpoint has no Medusa heads (config.medusa_heads = 0)")
        self.model, self.video_tokenizer = model.eval(), video_tokenizer.eval()
        self.params, self.medusa = params, medusa
        self.max_context, self.name, self.progress = max_context, name, progress
        self.carry = None if carry is None else bool(carry)  # kinema.model.carry, as the diffusion model's
        check_gate(carry_gate)
        self.carry_gate = carry_gate
        self.device = next(model.parameters()).device

    @property
    def sampling(self) -> dict | None:
        """Recorded in an evaluation's run.json only when on, so runs made before carry existed (off) still resume."""
        on = self.carry if self.carry is not None else DEFAULT_CARRY
        if not on:
            return None
        return {"carry": True, **({"carry_gate": self.carry_gate} if self.carry_gate is not None else {})}

    @property
    def seed(self) -> int:  # the sampling seed (kinema eval actions --samples draws seed, seed + 1, ...)
        return self.params.seed

    @seed.setter
    def seed(self, value: int) -> None:
        self.params = replace(self.params, seed=int(value))

    @torch.no_grad()
    def _encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [Tc, H, W, 3] -> indices [1, k, h, w] (fp32: the codes the model was trained on)."""
        from kinema.tokenize.data import to_model

        idx, _ = self.video_tokenizer.encode(to_model(frames)[None].to(self.device))
        return idx

    @torch.no_grad()
    def _decode(self, indices: torch.Tensor, num_frames: int) -> np.ndarray:
        from kinema.tokenize.data import to_uint8

        return to_uint8(self.video_tokenizer.decode(indices, num_frames=num_frames)[0])

    def _actions(self, req) -> tuple[np.ndarray | None, int]:
        """The request's actions normalised for the model [T, dim] and their slot, or (None, 0)."""
        if req.actions is None or req.actions.shape[1] == 0:
            return None, 0
        c = self.model.config
        slot = emb.find(c.embodiments, tuple(req.action_names), req.actions.shape[1], req.action_timing)
        e = c.embodiments[slot]
        return (np.asarray(req.actions, np.float32) - np.array(e.mean, np.float32)) / np.array(e.std, np.float32), slot

    def predict(self, req) -> np.ndarray:
        """-> uint8 [Tf, H, W, 3]"""
        from kinema.model.medusa import medusa_generate

        c = self.model.config
        tc, sc = c.temporal_compression, c.spatial_compression
        H, W = req.context.shape[1:3]
        if H % sc or W % sc:
            raise ValueError(f"context: frames must be multiples of {sc} pixels, got {H}x{W}")
        actions, slot = self._actions(req)
        carry = self.carry if self.carry is not None else carry_default(
            None if actions is None else self.model.config.embodiments[slot])
        # carry as Pipeline.rollout does it: the last real frame's detail, the chunks conditioned on decoded frames
        g = len(req.context) if req.given is None else int(req.given)
        real_last, decoded_last = req.context[g - 1], None
        if carry and g < len(req.context):
            n = 1 + tc * ((min(g, self.max_context) - 1) // tc)
            decoded_last = self._decode(self._encode(req.context[g - n : g]), n)[-1]
        frames = list(req.context)
        total_frames = len(req.context) + int(req.num_frames)
        while len(frames) < total_frames:
            n_ctx = 1 + tc * ((min(len(frames), self.max_context) - 1) // tc)
            start, need = len(frames) - n_ctx, total_frames - len(frames)
            T = min(c.clip_frames, 1 + tc * -(-(n_ctx + need - 1) // tc))  # 1 + 4m frames, at most the window
            t = 1 + (T - 1) // tc
            ctx = self._encode(np.stack(frames[start:]))
            kw = dict(fps=req.fps, domain=slot)
            if actions is not None:
                a = actions[start : start + T]
                a = np.concatenate([a, np.repeat(a[-1:], T - len(a), 0)]) if len(a) < T else a
                kw["actions"] = torch.as_tensor(a)[None].to(self.device)
            if self.medusa:
                codes, _ = medusa_generate(self.model, ctx, t, **kw)
            else:
                codes = self.model.generate(ctx, t, params=self.params, progress=self.progress, **kw)
            video = self._decode(codes, T)
            if decoded_last is None:  # the first chunk's given frames end with the last real one
                decoded_last = video[n_ctx - 1]
            frames += list(video[n_ctx : n_ctx + need])
        future = np.stack(frames[len(req.context) : total_frames])
        return carry_detail(future, real_last, decoded_last, self.carry_gate) if carry else future


def load_predictor(path, *, device: str = "auto", temperature: float = AR_SAMPLING.temperature,
                   top_p: float = AR_SAMPLING.top_p, top_k: int = 0, seed: int = 0, medusa: bool = False,
                   video_tokenizer=None, **options) -> ARWorldModelPredictor:
    """A checkpoint folder; its DV tokenizer defaults to the folder its config names, beside it."""
    from kinema.model.pipeline import pick_device
    from kinema.tokenize.load import load_tokenizer

    dev = pick_device(device)
    model = load_model(path, device=dev)
    vt_path = video_tokenizer or Path(path).parent / model.config.video_tokenizer
    vt = load_tokenizer(vt_path, "video_tokenizer", device=dev)
    if medusa and temperature == AR_SAMPLING.temperature:
        temperature = 0.0  # Medusa decoding is greedy
    params = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
    if "name" not in options:  # results of other decoding go to their own folder (kinema eval resumes by name)
        tags = [f"t{temperature:g}"] if temperature != AR_SAMPLING.temperature and not medusa else []
        tags += [f"p{top_p:g}"] if top_p != AR_SAMPLING.top_p and temperature != 0 else []
        tags += [f"k{top_k}"] if top_k else []
        tags += ["medusa"] if medusa else []
        tags += [] if options.get("carry") is None else ["carry" if options["carry"] else "nocarry"]
        tags += [] if options.get("carry_gate") is None else [f"g{options['carry_gate']:g}"]
        options["name"] = "_".join(["ar_world_model", *tags])
    return ARWorldModelPredictor(model, vt, params=params, medusa=medusa, **options)


class ARSurpriseJudge:
    """The autoregressive world model as a plausibility judge that never saw a plausibility label: surprise.

    Each window of the tokenizer's clip length (33 frames, windows 32 apart) of the first camera is encoded to DV
    codes and scored teacher-forced (ar_codec.code_bits); a latent frame's surprise is the mean bits of its
    codes given everything before it. The score is minus the largest surprise of any latent frame after a window's
    first (which has nothing before it): a violation is an event, so it makes some frame hard to predict."""

    def __init__(self, model: ARWorldModel, video_tokenizer, name: str = "ar_surprise"):
        self.model, self.video_tokenizer, self.name = model.eval(), video_tokenizer.eval(), name
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def surprise(self, frames: np.ndarray, fps: float = 16.0) -> np.ndarray:
        """uint8 [T, H, W, 3] -> mean bits a code of every latent frame after each window's first, in order."""
        from kinema.model.ar_codec import code_bits
        from kinema.tokenize.data import to_model

        frames = np.asarray(frames)
        n = self.model.config.clip_frames
        if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) < 1 + self.model.config.temporal_compression:
            raise ValueError(f"frames: expected uint8 [T >= {1 + self.model.config.temporal_compression}, H, W, 3], "
                             f"got {frames.dtype} {frames.shape}")
        out = []
        for s in range(0, max(1, len(frames) - n + 1), n - 1):
            idx, _ = self.video_tokenizer.encode(to_model(frames[s : s + n])[None].to(self.device))
            _, t, h, w = idx.shape
            bits = code_bits(self.model, idx, fps)[0, h * w :]
            out.append(bits.reshape(t - 1, h * w).mean(1).numpy())
        return np.concatenate(out)

    def score(self, item) -> float:
        if isinstance(item, np.ndarray):
            return -float(self.surprise(item).max())
        return -float(self.surprise(item.frames[item.cameras[0]], item.fps).max())


def load_judge(path, *, device: str = "auto", video_tokenizer=None, **_) -> ARSurpriseJudge:
    from kinema.model.pipeline import pick_device
    from kinema.tokenize.load import load_tokenizer

    dev = pick_device(device)
    model = load_model(path, device=dev)
    vt = load_tokenizer(video_tokenizer or Path(path).parent / model.config.video_tokenizer, "video_tokenizer",
                        device=dev)
    return ARSurpriseJudge(model, vt)
