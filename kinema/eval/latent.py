"""Distance between videos in a video tokenizer's latent space (optional: needs a tokenizer checkpoint).

Legend: B batch, T frames, H height, W width, Z latent channels, t h w latent grid.

Pixel metrics punish a prediction that is right but shifted by a pixel as much
as one that is wrong; a tokenizer's latent space is one step closer to what
a world model itself predicts. Nothing is downloaded: the tokenizer is a
checkpoint folder the user gives (`--tokenizer PATH`, one written by
`kinema tokenizer train`), and without one the figure is skipped with a note.
"""

from __future__ import annotations

import numpy as np
import torch

from kinema.eval.metrics import MetricResult


def load_tokenizer(path):
    """The video tokenizer at `path` (a checkpoint folder), in eval mode on the CPU."""
    from kinema.tokenize.load import load_tokenizer as _load  # imported only when asked: a heavy model package

    tok = _load(path)
    if not hasattr(tok, "encode"):
        raise ValueError(f"--tokenizer {path}: expected a video tokenizer (with encode), got {type(tok).__name__}")
    return tok


def _latent(tokenizer, video: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float latent (continuous latent, or the discrete tokenizer's code vectors)."""
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0  # [1, 3, T, H, W]
    with torch.no_grad():
        z = tokenizer.encode(x)
    return (z[1] if isinstance(z, tuple) else z).double()  # DV returns (indices, codes)


def latent_l2(tokenizer, pred: np.ndarray, target: np.ndarray, name: str = "") -> MetricResult:
    """Root-mean-square difference of the two clips' latents [1, Z, t, h, w]."""
    a, b = _latent(tokenizer, pred), _latent(tokenizer, target)
    value = float(((a - b) ** 2).mean().sqrt())
    return MetricResult(
        "latent_l2", value, None,
        f"RMS difference of video-tokenizer latents{f' ({name})' if name else ''}: each clip [1,3,T,H,W] in [-1,1] "
        "encoded on its own (continuous latent, or the discrete tokenizer's FSQ code vectors), "
        "sqrt(mean over Z*t*h*w of squared difference); lower is better",
    )
