"""The world model's config and its named presets (saved as JSON beside every checkpoint).

Sizes (two experts; only one runs per token, so a token costs one expert):
  tiny   D=64,  L=2   tests, seconds per step
  small  D=256, L=6   trained on this CPU and shipped (13.6M parameters, 27 MB bf16, before the reasoner's adapter)
  base   D=768, L=12  GPU (229M), one node
  large  D=1536, L=24 GPU (1.58B), FSDP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kinema.config import Config
from kinema.model.embodiments import BUILTIN, Embodiment, index

KIND = "world_model"


@dataclass
class WorldModelConfig(Config):
    width: int = 256
    depth: int = 6
    heads: int = 4
    mlp_hidden: int = 0                # SwiGLU hidden width; 0 = 8/3 * width rounded up to 64
    vocab_size: int = 2048             # text BPE vocabulary (tokenizer.json beside the weights)
    max_text_tokens: int = 64
    # vision: patchified latents of the video tokenizer
    latent_channels: int = 16
    patch: tuple[int, int] = (2, 2)    # over latent rows, columns (1 in time: a token is one latent frame's patch)
    temporal_compression: int = 4      # of the video tokenizer: a latent frame = 4 video frames
    tokenizer_window: int = 33         # of the video tokenizer: longer clips are encoded in windows of this many frames
    frame_condition: bool = False      # noisy frames also read the last given frame and the actions since (`cond`)
    cond_rows: int = 2                 # action rows in `cond`: 2 = since + now; 3 adds the given frame's (pose - pose)
    spatial_compression: int = 8
    # sound: the audio tokenizer's latents, `audio_patch` latent frames (25 Hz) per token
    audio_channels: int = 64
    audio_patch: int = 2
    audio_rate: float = 25.0           # audio latent frames per second
    reason_audio: bool = False         # the reasoner hears a video's sound (its audio latents join the video)
    # the reasoner's own view of the pixels (BAGEL: an understanding encoder beside the generator's VAE): each
    # clean vision token (a question's video, a generator sample's given frames) also carries its patch of the
    # latent frame's last video frame, average-pooled to pixel_cell x pixel_cell cells (sequence.pixel_patches);
    # 0 = off. The tokenizer's latents keep what reconstruction needs, not what a question asks (an object's
    # colour: 0.41 from latents, 0.84 from pixels, scripts/probe_colour.py)
    pixel_cell: int = 0
    # rank of the reasoner's adapter (mot.LoRA on its expert's projections), which only a question's tokens take:
    # the reasoner learns in it while the weights that encode the generator's prompt and given frames stay
    # still; 0 = none
    reason_adapter: int = 0
    # worlds whose questions take a reasoner adapter of their own (site `lora_{world}`: a LoRA of rank
    # reason_own_rank, 0 = reason_adapter's, added on top of the shared one) instead of the shared one alone: one
    # world's questions are taught while every other world's answers stay bit for bit (`kinema train --reason-own
    # WORLD`); a question is routed by the world its asker names (`kinema reason --domain`)
    reason_own: tuple = ()
    reason_own_rank: int = 0
    # rank of the generator's inverse-dynamics adapter (mot.LoRA on its expert's projections), which only the noisy
    # tokens of samples that generate actions and nothing else take: inverse dynamics learns in it while every
    # other mode stays exactly as it was; 0 = none
    inverse_adapter: int = 0
    # rank of the reasoner's inverse-dynamics adapter, which the clean tokens (prompt, given frames) of those same
    # samples take: inverse dynamics reads its frames through weights of its own (a context cache of its own);
    # 0 = none; needs inverse_adapter
    inverse_context: int = 0
    # embodiments whose inverse-dynamics samples take adapters of their own (both experts', at the ranks above;
    # site `inverse_{slot}`) instead of the shared ones: one robot's inverse dynamics is taught while every other
    # embodiment's stays bit for bit (`kinema train --inverse-own NAME`)
    inverse_own: tuple = ()
    # actions: one token per frame through a per-embodiment ("domain-aware") linear layer
    max_action_dim: int = 64
    max_embodiments: int = 32
    embodiments: list = field(default_factory=lambda: [replace(e) for e in BUILTIN])
    # positions: time in latent frames at ref_fps, so clips at other rates line up in seconds
    ref_fps: float = 16.0
    text_margin: float = 4.0           # gap between the last text position and time zero
    rope_theta: float = 10000.0
    # diffusion
    schedule: str = "rectified_flow"   # or "edm"
    base_shift: float = 2.0            # rectified-flow time shift at 16 tokens per latent frame (64x64 video)
    # EDM's learned uncertainty (REFERENCE §2): a log-variance u(sigma) weights the diffusion loss as
    # loss * exp(-u) + u; `kinema train --schedule edm` turns it on (off: the behaviour before it existed)
    loss_uncertainty: bool = False
    # data statistics (per channel), filled from the training data: the model sees standardised latents
    latent_mean: list = field(default_factory=list)
    latent_std: list = field(default_factory=list)
    audio_mean: list = field(default_factory=list)
    audio_std: list = field(default_factory=list)
    # the tokenizers it was trained with (checkpoint folder names under checkpoints/)
    video_tokenizer: str = "tokenizer-cv4x8x8"
    audio_tokenizer: str = "tokenizer-audio"

    def __post_init__(self):
        self.patch = tuple(self.patch)
        self.embodiments = [e if isinstance(e, Embodiment) else Embodiment(**e) for e in self.embodiments]
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"width {self.width} must split into {self.heads} heads of an even size")
        if len(self.embodiments) > self.max_embodiments:
            raise ValueError(f"{len(self.embodiments)} embodiments exceed max_embodiments={self.max_embodiments}")
        if self.pixel_cell < 0 or (self.pixel_cell and (self.patch[0] * self.spatial_compression % self.pixel_cell
                                                         or self.patch[1] * self.spatial_compression % self.pixel_cell)):
            raise ValueError(f"pixel_cell: expected 0 (off) or a divisor of a token's "
                             f"{self.patch[0] * self.spatial_compression}x{self.patch[1] * self.spatial_compression} "
                             f"pixels, got {self.pixel_cell}")
        for name in ("reason_adapter", "reason_own_rank", "inverse_adapter", "inverse_context"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected a rank >= 0 (0: no adapter), got {getattr(self, name)}")
        if self.inverse_context and not self.inverse_adapter:
            raise ValueError(f"inverse_context: the reasoner's inverse-dynamics adapter (rank {self.inverse_context}) "
                             "serves the generator's: give inverse_adapter too")
        self.reason_own = tuple(self.reason_own)
        if self.reason_own and not self.reason_adapter:
            raise ValueError(f"reason_own {self.reason_own}: a world's own reasoner adapter takes the shared one's rank: "
                             "give reason_adapter too")
        for name in self.reason_own:
            if not (isinstance(name, str) and name.isidentifier()) or self.reason_own.count(name) > 1:
                raise ValueError(f"reason_own: expected distinct world names (letters, digits, _), got {name!r} in "
                                 f"{self.reason_own}")
        self.inverse_own = tuple(self.inverse_own)
        if self.inverse_own and not self.inverse_adapter:
            raise ValueError(f"inverse_own {self.inverse_own}: own inverse-dynamics adapters take the shared one's rank: "
                             "give inverse_adapter too")
        names = [e.name for e in self.embodiments]
        for name in self.inverse_own:
            if name not in names or self.inverse_own.count(name) > 1:
                raise ValueError(f"inverse_own: {name!r} is not a registered embodiment or is named twice "
                                 f"(registered: {names})")
        if self.cond_rows not in (2, 3):
            raise ValueError(f"cond_rows: expected 2 or 3 action rows in cond, got {self.cond_rows}")
        self.latent_mean = list(self.latent_mean) or [0.0] * self.latent_channels
        self.latent_std = list(self.latent_std) or [1.0] * self.latent_channels
        self.audio_mean = list(self.audio_mean) or [0.0] * self.audio_channels
        self.audio_std = list(self.audio_std) or [1.0] * self.audio_channels

    @property
    def reason_sites(self) -> tuple[str, ...]:
        """The reasoner's question adapter sites: the shared `lora`, then `lora_{world}` per own world."""
        return ("lora",) + tuple(f"lora_{w}" for w in self.reason_own) if self.reason_adapter else ()

    def reason_slot(self, world: str | None) -> int:
        """Which question adapter a question about `world` takes: 0 the shared one, k the k-th own world's."""
        return 1 + self.reason_own.index(world) if world in self.reason_own else 0

    @property
    def inverse_sites(self) -> tuple[str, ...]:
        """The inverse-dynamics adapter sites: the shared `inverse`, then `inverse_{slot}` per own embodiment."""
        if not self.inverse_adapter:
            return ()
        return ("inverse",) + tuple(f"inverse_{index(self.embodiments, n)}" for n in self.inverse_own)

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def hidden(self) -> int:
        return self.mlp_hidden or -(-8 * self.width // 3 // 64) * 64

    @property
    def vision_dim(self) -> int:  # numbers in one vision token
        return self.latent_channels * self.patch[0] * self.patch[1]

    @property
    def pixel_dim(self) -> int:  # pooled pixels behind one vision token (0: the reasoner sees latents only)
        if not self.pixel_cell:
            return 0
        return 3 * (self.patch[0] * self.spatial_compression // self.pixel_cell) * \
            (self.patch[1] * self.spatial_compression // self.pixel_cell)

    @property
    def cond_dim(self) -> int:  # sequence.py `cond`: a given frame's patch, then cond_rows action rows
        return self.vision_dim + self.cond_rows * self.max_action_dim

    @property
    def audio_dim(self) -> int:
        return self.audio_channels * self.audio_patch

    @property
    def denoised_dim(self) -> int:  # the widest payload the generator denoises (pixels are only ever read)
        return max(self.vision_dim, self.audio_dim, self.max_action_dim)

    @property
    def value_dim(self) -> int:  # the padded width of any continuous token payload (a vision token: latents | pixels)
        return max(self.vision_dim + self.pixel_dim, self.denoised_dim)

    @property
    def positions_per_second(self) -> float:  # one temporal position per latent frame at ref_fps
        return self.ref_fps / self.temporal_compression

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["embodiments"] = [dict(e.__dict__, action_names=list(e.action_names)) for e in self.embodiments]
        return d


PRESETS = {
    "tiny": dict(width=64, depth=2, heads=2, vocab_size=512, frame_condition=True, cond_rows=3),
    "small": dict(width=256, depth=6, heads=4, frame_condition=True, cond_rows=3),
    "base": dict(width=768, depth=12, heads=12, vocab_size=32768, max_text_tokens=256, frame_condition=True, cond_rows=3),
    "large": dict(width=1536, depth=24, heads=24, vocab_size=65536, max_text_tokens=512, frame_condition=True, cond_rows=3),
}


def get_preset(name: str, **overrides) -> WorldModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown world-model preset {name!r}; known: {sorted(PRESETS)}")
    return WorldModelConfig(**{**PRESETS[name], **overrides})
