"""The diffusion timestep embedding: sinusoidal features of the noise level, then an MLP.

Legend: N values, D width. The schedule decides what the noise level is
(rectified flow: t in [0, 1]; EDM: ln(sigma) / 4); it is multiplied by `scale`
so the sinusoids span useful frequencies for values around 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """x [N] -> [N, dim] (cos | sin), as in DDPM / DiT."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[:, None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, width: int, features: int = 256, scale: float = 1000.0):
        super().__init__()
        self.features, self.scale = features, scale
        self.mlp = nn.Sequential(nn.Linear(features, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        """level [N] -> [N, D]"""
        return self.mlp(sinusoidal(level * self.scale, self.features).to(self.mlp[0].weight.dtype))
