"""The autoregressive world model's config and its named presets (saved as JSON beside every checkpoint).

Kept free of torch so that `import kinema.model` (which registers the checkpoint loaders) stays light.

Sizes (one expert, the reasoner; a token costs 12·D²·L backbone weights):
  tiny   D=64,  L=2   tests, well under a second per step
  small  D=256, L=6   trained on this CPU and shipped (~6M parameters with 5 Medusa heads, ~12 MB bf16)
  base   D=1024, L=16 GPU (~210M)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from kinema.config import Config
from kinema.model.embodiments import BUILTIN, Embodiment

KIND = "ar_world_model"
COSMOS_LEVELS = (8, 8, 8, 5, 5, 5)  # kinema.nn.fsq.COSMOS_LEVELS, repeated here to keep this file torch-free


@dataclass
class ARConfig(Config):
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_hidden: int = 0                # SwiGLU hidden width; 0 = 8/3 * width rounded up to 64
    rope_theta: float = 10000.0
    # the vocabulary: the DV tokenizer's FSQ codes (8*8*8*5*5*5 = 64,000)
    fsq_levels: tuple[int, ...] = COSMOS_LEVELS
    embed_hidden: int = 256            # code vector (6) -> MLP -> width: the input embedding
    head_rank: int = 64                # r: logits = proj(h) [r] @ W.T, W [V, r] made from the code vectors
    head_hidden: int = 256             # width of the MLP that turns each code vector into its row of W
    # video geometry (of the DV tokenizer) and time
    temporal_compression: int = 4      # a latent frame = 4 video frames (frame 0 alone)
    spatial_compression: int = 8       # 64x64 frames -> 8x8 codes per latent frame
    clip_frames: int = 33              # the training window: 9 latent frames
    ref_fps: float = 16.0              # one temporal position per latent frame at ref_fps (as the diffusion model)
    # actions: context tokens through a per-embodiment ("domain-aware") linear layer
    max_action_dim: int = 64
    max_embodiments: int = 32
    embodiments: list = field(default_factory=lambda: [replace(e) for e in BUILTIN])
    # objective and speculative decoding
    z_weight: float = 1e-4             # REFERENCE §3
    medusa_heads: int = 0              # Medusa heads held by the checkpoint (0: none)
    video_tokenizer: str = "tokenizer-dv4x8x8"

    def __post_init__(self):
        self.fsq_levels = tuple(int(v) for v in self.fsq_levels)
        self.embodiments = [e if isinstance(e, Embodiment) else Embodiment(**e) for e in self.embodiments]
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of an even size")
        if (self.clip_frames - 1) % self.temporal_compression:
            raise ValueError(f"clip_frames must be 1 + k*{self.temporal_compression}, got {self.clip_frames}")
        if len(self.embodiments) > self.max_embodiments:
            raise ValueError(f"{len(self.embodiments)} embodiments exceed max_embodiments={self.max_embodiments}")
        if self.medusa_heads < 0:
            raise ValueError(f"medusa_heads: expected >= 0, got {self.medusa_heads}")

    @property
    def vocab_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def code_dim(self) -> int:
        return len(self.fsq_levels)

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or -(-8 * self.width // 3 // 64) * 64

    @property
    def positions_per_second(self) -> float:  # as WorldModelConfig: one temporal position per latent frame at ref_fps
        return self.ref_fps / self.temporal_compression

    @property
    def latent_frames(self) -> int:  # of a training window
        return 1 + (self.clip_frames - 1) // self.temporal_compression

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["fsq_levels"] = list(self.fsq_levels)
        d["embodiments"] = [dict(e.__dict__, action_names=list(e.action_names)) for e in self.embodiments]
        return d


PRESETS = {
    "tiny": dict(width=64, depth=2, heads=2, embed_hidden=32, head_rank=16, head_hidden=32, max_embodiments=4,
                 max_action_dim=16),
    "small": dict(width=256, depth=6, heads=4),
    "base": dict(width=1024, depth=16, heads=16, head_rank=128, head_hidden=512),
}


def get_preset(name: str, **overrides) -> ARConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown autoregressive world-model preset {name!r}; known: {sorted(PRESETS)}")
    return ARConfig(**{**PRESETS[name], **overrides})
