"""Causal video layers of the Cosmos tokenizer: every output frame depends only on input frames up to it.

Legend: B batch, C channels, T frames, H height, W width.

All modules take and return [B, C, T, H, W]. Causality comes from three rules:
temporal convolutions pad only at the front (repeating the first frame), norms
never mix frames (GroupNorm with one group applied to each frame on its own),
and temporal attention is masked lower-triangular. Temporal down- and
upsampling keep the "1 + k*factor frames" structure: 1 + 2k <-> 1 + k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def frames_to_batch(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """[B, C, T, H, W] -> [B*T, C, H, W] (and T, to undo)."""
    B, C, T, H, W = x.shape
    return x.transpose(1, 2).reshape(B * T, C, H, W), T


def batch_to_frames(x: torch.Tensor, T: int) -> torch.Tensor:
    BT, C, H, W = x.shape
    return x.reshape(BT // T, T, C, H, W).transpose(1, 2)


def pad_front(x: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat the first frame n times in front (causal padding)."""
    return torch.cat([x[:, :, :1].expand(-1, -1, n, -1, -1), x], dim=2) if n else x


class FrameNorm(nn.Module):
    """GroupNorm(1, C) on each frame separately: a LayerNorm over (C, H, W) that never mixes time."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels, eps=1e-6)

    def forward(self, x):
        y, T = frames_to_batch(x)
        return batch_to_frames(self.norm(y), T)


class SpatialConv(nn.Module):
    """A (1, k, k) convolution, zero-padded in space, applied per frame."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, (1, k, k), stride=(1, stride, stride), padding=(0, k // 2, k // 2) if stride == 1 else 0)

    def forward(self, x):
        return self.conv(x)


class TemporalConv(nn.Module):
    """A causal (k, 1, 1) convolution: the front is padded with k-1 copies of the first frame."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__()
        self.k = k
        self.conv = nn.Conv3d(cin, cout, (k, 1, 1), stride=(stride, 1, 1))

    def forward(self, x):
        return self.conv(pad_front(x, self.k - 1))


class FactorizedConv(nn.Sequential):
    """A causal 3x3x3 convolution factorized as (1,3,3) in space then (3,1,1) in time."""

    def __init__(self, cin: int, cout: int):
        super().__init__(SpatialConv(cin, cout), TemporalConv(cout, cout))


class ResBlock(nn.Module):
    """norm -> SiLU -> conv -> norm -> SiLU -> dropout -> conv, plus a 1x1x1 shortcut when widths differ."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            FrameNorm(cin), nn.SiLU(), FactorizedConv(cin, cout),
            FrameNorm(cout), nn.SiLU(), nn.Dropout(dropout), FactorizedConv(cout, cout),
        )
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class Attention(nn.Module):
    """Single-head self-attention, residual. "space": over the H*W positions of each frame (frames never mix).
    "time": along time at each pixel, causally masked so frame t sees frames <= t."""

    def __init__(self, channels: int, axis: str):
        super().__init__()
        if axis not in ("space", "time"):
            raise ValueError(f"axis must be 'space' or 'time', got {axis!r}")
        self.axis = axis
        self.norm = FrameNorm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj = nn.Conv3d(channels, channels, 1)

    def forward(self, x):
        B, C, T, H, W = x.shape
        if self.axis == "space":  # [B*T, H*W, C]
            seq = lambda t: t.permute(0, 2, 3, 4, 1).reshape(B * T, H * W, C)  # noqa: E731
        else:  # [B*H*W, T, C]
            seq = lambda t: t.permute(0, 3, 4, 2, 1).reshape(B * H * W, T, C)  # noqa: E731
        q, k, v = (seq(t) for t in self.qkv(self.norm(x)).chunk(3, dim=1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.axis == "time")
        if self.axis == "space":
            y = y.reshape(B, T, H, W, C).permute(0, 4, 1, 2, 3)
        else:
            y = y.reshape(B, H, W, T, C).permute(0, 4, 3, 1, 2)
        return x + self.proj(y)


class Downsample(nn.Module):
    """Hybrid 2x downsampling: strided conv + average pool, in space and/or (causally) in time, then 1x1x1."""

    def __init__(self, channels: int, spatial: bool, temporal: bool):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        if spatial:
            self.sconv = SpatialConv(channels, channels, 3, stride=2)
        if temporal:
            self.tconv = TemporalConv(channels, channels, 3, stride=2)
        self.mix = nn.Conv3d(channels, channels, 1)

    def forward(self, x):
        if self.spatial:  # H, W even -> halved; pad right/bottom so the 3x3 stride-2 conv covers the edge
            x = self.sconv(F.pad(x, (0, 1, 0, 1))) + F.avg_pool3d(x, (1, 2, 2), (1, 2, 2))
        if self.temporal:  # 1 + 2k frames -> 1 + k; output j sees input frames <= 2j
            x = self.tconv(x) + F.avg_pool3d(pad_front(x, 1), (2, 1, 1), (2, 1, 1))
        return self.mix(x)


class Upsample(nn.Module):
    """Inverse of `Downsample`: repeat in time (dropping the first copy) and nearest in space, each with a residual conv."""

    def __init__(self, channels: int, spatial: bool, temporal: bool):
        super().__init__()
        self.spatial, self.temporal = spatial, temporal
        if temporal:
            self.tconv = TemporalConv(channels, channels, 3)
        if spatial:
            self.sconv = SpatialConv(channels, channels, 3)
        self.mix = nn.Conv3d(channels, channels, 1)

    def forward(self, x):
        if self.temporal:  # 1 + k frames -> 1 + 2k; frame 0 still comes from latent frame 0 alone
            x = x.repeat_interleave(2, dim=2)[:, :, 1:]
            x = x + self.tconv(x)
        if self.spatial:
            x = x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
            x = x + self.sconv(x)
        return self.mix(x)
