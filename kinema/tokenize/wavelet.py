"""The Haar wavelet patcher of Cosmos-Tokenizer: a lossless 4x4x4 space-to-channel transform.

Legend: B batch, C channels, T frames, H height, W width.

One level applies the orthonormal Haar filter pair [1/sqrt2, 1/sqrt2] (low) and
[1/sqrt2, -1/sqrt2] (high) with stride 2 along T, then H, then W, giving 8
subbands, and divides by 2*sqrt2 so the all-low band is the mean of its 2x2x2
block (values stay in [-1, 1]). Two levels applied to every band (a full wavelet
packet) turn 3 channels into 3 * 8 * 8 = 192 at a quarter of T, H and W.

Time is causal: the first frame is repeated so that 1 + T frames become 4 + T,
a multiple of 4, and latent frame 0 sees frame 0 alone. An image is a one-frame
video. `unpatch` inverts `patch` exactly (up to float rounding) and drops the
repeated frames again.
"""

from __future__ import annotations

import math

import torch

LEVELS = 2
PATCH = 2**LEVELS  # 4 in each of T, H, W
_R2 = math.sqrt(2.0)
_RESCALE = 2.0 * _R2  # Cosmos' per-level rescaling


def _split(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Haar analysis along `dim` (even length): bands stacked on a new axis 1 -> [B, 2, C, ...]."""
    a, b = x.unflatten(dim, (-1, 2)).unbind(dim + 1)
    return torch.stack(((a + b) / _R2, (a - b) / _R2), dim=1)


def _merge(lo: torch.Tensor, hi: torch.Tensor, dim: int) -> torch.Tensor:
    """Haar synthesis along `dim`: interleave (lo+hi)/sqrt2 and (lo-hi)/sqrt2."""
    return torch.stack(((lo + hi) / _R2, (lo - hi) / _R2), dim=dim + 1).flatten(dim, dim + 1)


def dwt3d(x: torch.Tensor) -> torch.Tensor:
    """One level: [B, C, T, H, W] (T, H, W even) -> [B, 8C, T/2, H/2, W/2], band-major channels
    (band = 4*t_band + 2*h_band + w_band, 0 = low)."""
    B, C = x.shape[:2]
    y = _split(x, 2).flatten(0, 1)  # T: [B*2, C, T/2, H, W]
    y = _split(y, 3).flatten(0, 1)  # H: [B*4, C, T/2, H/2, W]
    y = _split(y, 4)  # W: [B*4, 2, C, T/2, H/2, W/2]
    return y.reshape(B, 8 * C, *y.shape[-3:]) / _RESCALE


def idwt3d(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `dwt3d`: [B, 8C, t, h, w] -> [B, C, 2t, 2h, 2w]."""
    B, C8 = y.shape[:2]
    C = C8 // 8
    y = (y * _RESCALE).reshape(B * 4, 2, C, *y.shape[-3:])
    x = _merge(y[:, 0], y[:, 1], 4)  # W
    x = x.reshape(B * 2, 2, C, *x.shape[-3:])
    x = _merge(x[:, 0], x[:, 1], 3)  # H
    x = x.reshape(B, 2, C, *x.shape[-3:])
    return _merge(x[:, 0], x[:, 1], 2)  # T


def patch(x: torch.Tensor) -> torch.Tensor:
    """Video [B, C, 1+T, H, W] (T % 4 == 0, H % 4 == W % 4 == 0) -> [B, 64C, 1+T/4, H/4, W/4]."""
    x = torch.cat([x[:, :, :1].expand(-1, -1, PATCH - 1, -1, -1), x], dim=2)  # causal first-frame repeat
    for _ in range(LEVELS):
        x = dwt3d(x)
    return x


def unpatch(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `patch`: [B, 64C, t, h, w] -> [B, C, 1+4(t-1), 4h, 4w]."""
    for _ in range(LEVELS):
        y = idwt3d(y)
    return y[:, :, PATCH - 1 :]
