"""Finite scalar quantization (FSQ, Mentzer et al. 2023): a codebook without a codebook.

Legend: B batch, D code dims (= len(levels)), ... any further axes.

Each of the D dims is squashed by tanh into a bounded range holding `levels[i]`
integers and rounded with a straight-through gradient; the implicit codebook is
the product of the levels (8*8*8*5*5*5 = 64,000 for Cosmos' DV tokenizers). No
commitment loss, no dead codes. Codes are the rounded values scaled into
[-1, 1]; an index is the mixed-radix number whose digits are the per-dim levels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

COSMOS_LEVELS = (8, 8, 8, 5, 5, 5)


class FSQ(nn.Module):
    """Quantize along dim 1: z [B, D, ...] -> (codes [B, D, ...] in [-1, 1], indices int64 [B, ...])."""

    def __init__(self, levels=COSMOS_LEVELS, eps: float = 1e-3):
        super().__init__()
        if not levels or any(int(l) < 2 for l in levels):
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.levels = tuple(int(l) for l in levels)
        self.eps = eps
        L = torch.tensor(self.levels, dtype=torch.float64)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1], dtype=torch.int64), 0)
        self.register_buffer("_levels", L.float(), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    @property
    def bits_per_token(self) -> float:
        return math.log2(self.codebook_size)

    def _shape(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        return v.view(1, -1, *([1] * (ndim - 2)))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z so that rounding yields exactly `levels` integers per dim (centred, even levels offset by 1/2)."""
        L = self._shape(self._levels, z.dim())
        half_l = (L - 1) * (1 + self.eps) / 2
        offset = torch.where(L % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z.float() + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.dim() < 2 or z.shape[1] != self.dim:
            raise ValueError(f"FSQ input must be [B, {self.dim}, ...], got shape {tuple(z.shape)}")
        b = self.bound(z)
        q = b + (torch.round(b) - b).detach()  # straight-through rounding
        half_w = self._shape(torch.div(self._levels, 2, rounding_mode="floor"), z.dim())
        codes = q / half_w
        return codes, self.codes_to_indices(codes)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, D, ...] codes -> int64 [B, ...] indices in [0, codebook_size)."""
        half_w = self._shape(torch.div(self._levels, 2, rounding_mode="floor"), codes.dim())
        digits = torch.round(codes.detach().float() * half_w + half_w).long()
        return (digits * self._shape(self._basis, codes.dim())).sum(1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 [B, ...] -> codes [B, D, ...]; the exact inverse of `codes_to_indices`."""
        if indices.dtype.is_floating_point:
            raise ValueError(f"FSQ indices must be an integer tensor, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise ValueError(f"FSQ indices must lie in [0, {self.codebook_size}), got "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        idx = indices.unsqueeze(1)
        L = self._shape(self._levels.long(), idx.dim())
        digits = torch.div(idx, self._shape(self._basis, idx.dim()), rounding_mode="floor") % L
        half_w = torch.div(L, 2, rounding_mode="floor")
        return (digits - half_w).float() / half_w
