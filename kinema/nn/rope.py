"""3D multimodal rotary positions (mRoPE, Qwen2-VL), with float positions.

Legend: B batch, L tokens, H heads, Dh head dim, P = Dh/2 rotary pairs.

Every token carries a position (t, h, w). Text uses (p, p, p), which makes
mRoPE equal plain 1-D RoPE on text; vision uses (time, row, column). The P
frequency pairs of a head are split into three sections: the first `t_pairs`
rotate by t, the next by h, the last by w (Qwen2-VL's layout: time takes the
fastest frequencies). Positions are floats so time can be in seconds scaled to
a reference rate: clips at different fps line up.
"""

from __future__ import annotations

import torch


def sections(head_dim: int) -> tuple[int, int, int]:
    """Pairs per axis (t, h, w): a quarter to time, the rest split between rows and columns (Qwen's 16:24:24)."""
    if head_dim % 2:
        raise ValueError(f"head_dim: expected an even number, got {head_dim}")
    pairs = head_dim // 2
    hw = (pairs - pairs // 4) // 2
    return pairs - 2 * hw, hw, hw


def rope_angles(pos: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """pos [B, L, 3] (t, h, w) -> (cos, sin) [B, 1, L, P], computed in fp32."""
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"pos: expected [B, L, 3] (t, h, w) positions, got {tuple(pos.shape)}")
    pairs = head_dim // 2
    inv_freq = theta ** (-torch.arange(pairs, dtype=torch.float32, device=pos.device) / pairs)  # [P]
    axis = torch.repeat_interleave(torch.arange(3, device=pos.device), torch.tensor(sections(head_dim), device=pos.device))
    angles = pos.float()[..., axis] * inv_freq  # [B, L, P]: pair i rotates by the position on its axis
    return angles.cos()[:, None], angles.sin()[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, Dh] rotated pairwise (rotate-half layout); cos/sin [B, 1, L, P]."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(x.dtype)
