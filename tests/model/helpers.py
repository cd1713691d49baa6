"""Tiny world models, tokenizers and samples shared by the world-model tests (fixtures in conftest.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kinema.model.config import get_preset
from kinema.model.embodiments import register_embodiment
from kinema.model.sequence import Tokens, build
from kinema.model.world_model import WorldModel

SENTENCES = [
    "push the cyan block into the magenta goal",
    "push the red block into the green goal",
    "pick up the yellow cube and place it on the blue plate",
    "A red ball falls onto the table and bounces twice before it comes to rest.",
    "A row of dominoes topples one after the other.",
    "The robot pushes the cyan block into the magenta goal.",
] * 3
VIDEO_PRESET = "cv4x8x8-tiny"  # 16 latent channels, 4x temporal, 8x spatial: the world model's defaults
AUDIO_CHANNELS = 4             # the tiny audio tokenizer's latent channels
SIZE = 32                      # 32x32 frames -> 4x4 latents -> 2x2 vision tokens per latent frame
TOY = dict(name="toy_gripper", dim=3, timing="at", action_names=("x", "y", "grip"))


def tiny_config(**overrides):
    """The tiny preset fitted to the tiny tokenizers, with one extra (registered) embodiment."""
    cfg = get_preset("tiny", audio_channels=AUDIO_CHANNELS, video_tokenizer="tok-video", audio_tokenizer="tok-audio",
                     **overrides)
    slot = register_embodiment(cfg.embodiments, TOY["name"], TOY["dim"], timing=TOY["timing"],
                               action_names=TOY["action_names"], max_action_dim=cfg.max_action_dim,
                               max_embodiments=cfg.max_embodiments)
    cfg.embodiments[slot].mean, cfg.embodiments[slot].std = [0.1, -0.2, 0.5], [2.0, 1.5, 0.25]
    return cfg


def random_heads(model: WorldModel, std: float = 0.05) -> WorldModel:
    """The output heads and the given-frame input start at zero (predict nothing, pass no gradient): give them
    random weights."""
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        frame = (model.frame_in.weight, model.moved_in.weight) if model.frame_in is not None else ()
        for p in (model.vision_out.weight, model.audio_out.weight, model.action_out.weight, *frame):
            p.copy_(torch.randn(p.shape, generator=g) * std)
        for p in (model.vision_out.bias, model.audio_out.bias, model.action_out.bias):
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def tiny_model(cfg=None, seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    return random_heads(WorldModel(cfg or tiny_config())).eval()


def mixed_sample(cfg, *, n_text=4, t=3, vision_gen=(False, True, True), audio=True, audio_gen=True, rows=None,
                 action_gen=None, domain=0, fps=16.0, seed=0, grid=(4, 4)) -> Tokens:
    """text + vision (clean and noisy latent frames) + audio + actions, random values."""
    g = torch.Generator().manual_seed(seed)
    tc = cfg.temporal_compression
    T = 1 + tc * (t - 1)
    rows = T - 1 if rows is None else rows
    kw = {}
    if audio:
        kw.update(audio=torch.randn(cfg.audio_channels, 9, generator=g), audio_gen=audio_gen)
    if rows:
        gen = action_gen if action_gen is not None else [r + 1 > tc * (sum(not v for v in vision_gen) - 1)
                                                          for r in range(rows)]
        kw.update(actions=torch.randn(rows, cfg.embodiments[domain].dim, generator=g), action_gen=gen, domain=domain)
    text = torch.randint(10, 200, (n_text,), generator=g).tolist()
    vision = torch.randn(cfg.latent_channels, t, *grid, generator=g)
    return build(cfg, text=text, vision=vision, vision_gen=list(vision_gen), fps=fps, **kw)


def random_frames(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """A smooth moving pattern (uint8 [n, size, size, 3]) so the tokenizers see something video-like."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 6, 3)
    frames = [np.stack([np.sin(6 * x + 0.3 * i + phase[c]) * np.cos(4 * y + phase[c]) for c in range(3)], -1)
              for i in range(n)]
    return ((np.stack(frames) + 1) * 127.5).clip(0, 255).astype(np.uint8)


def grads(module: nn.Module) -> dict[str, float]:
    """Parameter name -> gradient norm (0.0 for no gradient)."""
    return {n: (0.0 if p.grad is None else float(p.grad.norm())) for n, p in module.named_parameters()}
