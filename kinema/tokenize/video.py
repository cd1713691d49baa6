"""The causal wavelet video tokenizer (Cosmos-Tokenizer architecture), continuous (CV) and discrete (DV).

Legend: B batch, T frames (1 + k * tf), H height, W width, tf temporal and
sf spatial compression, t = 1 + k latent frames, h = H/sf, w = W/sf,
Z latent channels (CV: `latent_channels`; DV: len(fsq_levels) code dims).

  video  [B, 3, T, H, W] float in [-1, 1]   --encode-->   CV: latent [B, Z, t, h, w]
                                                           DV: (indices int64 [B, t, h, w], codes [B, 6, t, h, w])
  --decode--> video [B, 3, T, H, W]

Encoder: Haar wavelet patcher (4x in T, H, W) -> factorized causal conv ->
stages of residual blocks with hybrid downsampling (the extra 2x stages beyond
the wavelet's 4x) -> middle block (res, spatial attention, causal temporal
attention, res) -> conv to Z. The decoder mirrors it and ends in the inverse
wavelet. Every layer is causal in time, so latent frame j depends on input
frames <= j*tf only, and an image is a one-frame video.

Clip lengths. A clip must have 1 + k*tf frames; `encode` pads any other length
at the end by repeating its last frame, and `decode(..., num_frames=T)` crops
back. Long videos are cut into independent windows of `window` frames (a
1 + k*tf, default 33): each window is encoded on its own,
its first frame as a key latent, and the latents concatenated along time; no
overlap, so memory is bounded by one window and latents of earlier windows
never change. `decode` splits latents back into windows of 1 + (window-1)/tf.
The count (`latent_frames`): T is padded to T' = 1 + ceil((T-1)/tf)*tf, cut into
n = T' // window full windows of 1 + (window-1)/tf latents each and a rest of
r = T' % window frames, padded again on its own to 1 + ceil((r-1)/tf)*tf (its
own key frame), so t = n*(1 + (window-1)/tf) + (1 + ceil((r-1)/tf) if r else 0).
For T <= window that is 1 + ceil((T-1)/tf); beyond it each later window adds a
key latent (tf=4, window 33: T=34 -> 11, 65 -> 18, 66 -> 20).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from kinema.config import Config

from kinema.nn.fsq import COSMOS_LEVELS, FSQ
from kinema.tokenize import wavelet
from kinema.tokenize.layers import (
    Attention,
    Downsample,
    FactorizedConv,
    FrameNorm,
    ResBlock,
    Upsample,
    pad_front,
)

KIND = "video_tokenizer"
PATCH_CHANNELS = 3 * wavelet.PATCH**3  # 192: the patcher's channels for an RGB clip
WHITEN = ("none", "encoder", "both")


@dataclass
class VideoTokenizerConfig(Config):
    discrete: bool = False              # DV (FSQ) or CV (plain autoencoder, no KL)
    temporal_compression: int = 4       # 4 or 8 (the wavelet gives 4)
    spatial_compression: int = 8        # 8 or 16 (the wavelet gives 4)
    channels: int = 32                  # base width
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    latent_channels: int = 16           # CV latent channels; DV's bottleneck before the code projection
    fsq_levels: tuple[int, ...] = COSMOS_LEVELS
    dropout: float = 0.0
    wavelet: bool = True                # False: plain space-to-depth patches (the ablation)
    wavelet_rescale: bool = True        # Cosmos' 1/(2*sqrt2) per Haar level; False: orthonormal (an ablation)
    whiten: str = "none"                # "encoder": the encoder reads each patch channel divided by band_rms;
                                        # "both": the decoder also outputs them so (x band_rms before unpatching)
    band_rms: tuple[float, ...] = ()    # RMS of each of the 192 patch channels on training clips (`fit_band_rms`)
    window: int = 33                    # frames per independent window for long videos (1 + k*tf)

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.fsq_levels = tuple(self.fsq_levels)
        self.band_rms = tuple(float(v) for v in self.band_rms)
        if self.whiten not in WHITEN:
            raise ValueError(f"whiten must be one of {', '.join(WHITEN)}, got {self.whiten!r}")
        if self.whiten != "none" and (len(self.band_rms) != PATCH_CHANNELS or min(self.band_rms) <= 0):
            raise ValueError(f"whiten={self.whiten!r} needs band_rms: {PATCH_CHANNELS} positive values "
                             f"(fit_band_rms on training clips), got {len(self.band_rms)}")
        for name, v in (("temporal_compression", self.temporal_compression), ("spatial_compression", self.spatial_compression)):
            if v < wavelet.PATCH or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= {wavelet.PATCH}, got {v}")
        need = max(self.spatial_downs, self.temporal_downs)
        if len(self.channel_mult) < need + 1:
            raise ValueError(f"channel_mult {self.channel_mult} has {len(self.channel_mult)} stages; "
                             f"{self.compression} needs at least {need + 1}")
        if (self.window - 1) % self.temporal_compression:
            raise ValueError(f"window must be 1 + k*{self.temporal_compression} frames, got {self.window}")

    @property
    def spatial_downs(self) -> int:
        return int(math.log2(self.spatial_compression // wavelet.PATCH))

    @property
    def temporal_downs(self) -> int:
        return int(math.log2(self.temporal_compression // wavelet.PATCH))

    @property
    def compression(self) -> str:
        return f"{self.temporal_compression}x{self.spatial_compression}x{self.spatial_compression}"

    @property
    def code_dim(self) -> int:
        return len(self.fsq_levels) if self.discrete else self.latent_channels


# Sizes: "tiny" runs a forward+backward in well under a second (tests); "small" is what ships;
# "cosmos" is the published 128-channel [2, 4, 4] configuration (90M parameters at 4x8x8).
SIZES = {
    "tiny": dict(channels=8, channel_mult=(1, 2, 2), num_res_blocks=1),
    "small": dict(channels=48, channel_mult=(1, 2, 2), num_res_blocks=1),
    "base": dict(channels=64, channel_mult=(2, 2, 4), num_res_blocks=2),
    "cosmos": dict(channels=128, channel_mult=(2, 4, 4), num_res_blocks=2),
}
COMPRESSIONS = {"4x8x8": (4, 8), "8x8x8": (8, 8), "8x16x16": (8, 16)}
PRESETS = {
    f"{kind}{comp}-{size}": VideoTokenizerConfig(discrete=kind == "dv", temporal_compression=tc, spatial_compression=sc, **kw)
    for kind in ("cv", "dv") for comp, (tc, sc) in COMPRESSIONS.items() for size, kw in SIZES.items()
}


def get_preset(name: str) -> VideoTokenizerConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown video tokenizer preset {name!r}; choose from {', '.join(PRESETS)}")
    return VideoTokenizerConfig.from_dict(PRESETS[name].to_dict())


class SpaceToDepth(nn.Module):
    """The ablation's patcher: the same causal 4x4x4 blocks as the wavelet, rearranged without transforming them."""

    @staticmethod
    def patch(x):  # [B, C, 1+T, H, W] -> [B, 64C, 1+T/4, H/4, W/4]
        x = pad_front(x, wavelet.PATCH - 1)
        B, C, T, H, W = x.shape
        p = wavelet.PATCH
        x = x.reshape(B, C, T // p, p, H // p, p, W // p, p).permute(0, 3, 5, 7, 1, 2, 4, 6)
        return x.reshape(B, p**3 * C, T // p, H // p, W // p)

    @staticmethod
    def unpatch(y):
        B, C64, t, h, w = y.shape
        p = wavelet.PATCH
        x = y.reshape(B, p, p, p, C64 // p**3, t, h, w).permute(0, 4, 5, 1, 6, 2, 7, 3)
        return x.reshape(B, C64 // p**3, t * p, h * p, w * p)[:, :, p - 1 :]


def _middle(ch: int) -> nn.Sequential:
    return nn.Sequential(ResBlock(ch, ch), Attention(ch, "space"), Attention(ch, "time"), ResBlock(ch, ch))


class Encoder(nn.Module):
    def __init__(self, cfg: VideoTokenizerConfig):
        super().__init__()
        chans = [cfg.channels * m for m in cfg.channel_mult]
        self.conv_in = FactorizedConv(PATCH_CHANNELS, chans[0])
        stages, cin = [], chans[0]
        for i, cout in enumerate(chans):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(cin, cout, cfg.dropout))
                cin = cout
            sdown, tdown = i < cfg.spatial_downs, i < cfg.temporal_downs
            if sdown or tdown:
                blocks.append(Downsample(cout, sdown, tdown))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.middle = _middle(cin)
        self.out = nn.Sequential(FrameNorm(cin), nn.SiLU(), FactorizedConv(cin, cfg.latent_channels))

    def forward(self, x):  # patched [B, 192, t, 4h', 4w'] -> [B, Z, t, h, w]
        return self.out(self.middle(self.stages(self.conv_in(x))))


class Decoder(nn.Module):
    def __init__(self, cfg: VideoTokenizerConfig):
        super().__init__()
        chans = [cfg.channels * m for m in cfg.channel_mult]
        cin = chans[-1]
        self.conv_in = FactorizedConv(cfg.latent_channels, cin)
        self.middle = _middle(cin)
        stages = []
        for i in reversed(range(len(chans))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(cin, chans[i], cfg.dropout))
                cin = chans[i]
            sup, tup = i - 1 < cfg.spatial_downs, i - 1 < cfg.temporal_downs  # mirrors the encoder's stage i-1
            if i > 0 and (sup or tup):
                blocks.append(Upsample(cin, sup, tup))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out = nn.Sequential(FrameNorm(cin), nn.SiLU(), FactorizedConv(cin, PATCH_CHANNELS))

    def forward(self, z):
        return self.out(self.stages(self.middle(self.conv_in(z))))


class OrthonormalHaar:
    """The ablation of Cosmos' rescaling: the same Haar packet, energy-preserving (a rotation of SpaceToDepth's
    blocks). Cosmos divides each level by 2*sqrt2, so its coefficients are 8x smaller over two levels."""

    GAIN = 8.0  # (2 * sqrt2) ** 2

    @staticmethod
    def patch(x):
        return wavelet.patch(x) * OrthonormalHaar.GAIN

    @staticmethod
    def unpatch(y):
        return wavelet.unpatch(y / OrthonormalHaar.GAIN)


def patcher_of(cfg: VideoTokenizerConfig):
    return (wavelet if cfg.wavelet_rescale else OrthonormalHaar) if cfg.wavelet else SpaceToDepth


@torch.no_grad()
def fit_band_rms(cfg: VideoTokenizerConfig, clips: torch.Tensor) -> tuple[float, ...]:
    """RMS of each patch channel over clips [N, 3, T, H, W] in [-1, 1]: the divisors that give every wavelet band
    unit scale. Cosmos' Haar packet leaves the low band near the pixels' scale and the high bands, on these
    flat-shaded scenes, up to 180x smaller, while a per-coordinate optimizer (AdamW) steps every weight alike;
    standardizing the bands as the encoder's inputs and the decoder's outputs (classic input and target
    standardization) is what lets the wavelet beat plain space-to-depth (BENCHMARKS.md, Tokenizers)."""
    y = patcher_of(cfg).patch(clips.float())  # [N, 192, t, h, w]
    rms = y.square().mean(dim=(0, 2, 3, 4)).sqrt().clamp_min(1e-4)
    return tuple(float(f"{v:.6g}") for v in rms.tolist())


class VideoTokenizer(nn.Module):
    def __init__(self, cfg: VideoTokenizerConfig):
        super().__init__()
        self.cfg = cfg
        self.patcher = patcher_of(cfg)
        # [1, 192, 1, 1, 1]; a constant of the config (saved in config.json), not a weight
        scale = torch.tensor(cfg.band_rms or [1.0] * PATCH_CHANNELS).view(1, -1, 1, 1, 1)
        self.register_buffer("band_scale", scale, persistent=False)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        if cfg.discrete:
            self.quant_conv = nn.Conv3d(cfg.latent_channels, cfg.code_dim, 1)
            self.fsq = FSQ(cfg.fsq_levels)
            self.post_quant_conv = nn.Conv3d(cfg.code_dim, cfg.latent_channels, 1)

    def encoder_parameters(self):
        """Everything that makes the latent (frozen when only the decoder is fine-tuned)."""
        yield from self.encoder.parameters()
        if self.cfg.discrete:
            yield from self.quant_conv.parameters()

    # -- input checks -------------------------------------------------------------------------
    def check_video(self, x: torch.Tensor, name: str = "video") -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor [B, 3, T, H, W] in [-1, 1], got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise ValueError(f"{name} has dtype {x.dtype}; expected float in [-1, 1] "
                             "(for uint8 frames use x.float() / 127.5 - 1)")
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"{name} must be [B, 3, T, H, W], got shape {tuple(x.shape)}")
        sc = self.cfg.spatial_compression
        if x.shape[3] % sc or x.shape[4] % sc:
            raise ValueError(f"{name} height and width must be multiples of {sc}, got {x.shape[3]}x{x.shape[4]}")
        if x.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(x.shape)}; expected B, T, H and W all >= 1")
        if not bool(torch.isfinite(x).all()):  # NaN compares false with any bound, so the range check misses it
            raise ValueError(f"{name} has {int((~torch.isfinite(x)).sum())} NaN or infinite values; expected "
                             "finite values in [-1, 1]")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1.001 or hi > 1.001:
            raise ValueError(f"{name} values must lie in [-1, 1], got [{lo:.3g}, {hi:.3g}] "
                             "(for frames in [0, 1] use 2x - 1; for 0..255 use x / 127.5 - 1)")

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames `encode` makes of a clip of `num_frames` (padding and windows as in the module docstring)."""
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        tf, win = self.cfg.temporal_compression, self.cfg.window

        def one_window(n: int) -> int:  # n frames, padded to 1 + k*tf, their first frame a key latent
            return 1 + math.ceil((n - 1) / tf)

        padded = 1 + math.ceil((num_frames - 1) / tf) * tf  # encode pads the whole clip before cutting windows
        full, rest = divmod(padded, win)
        return full * one_window(win) + (one_window(rest) if rest else 0)

    # -- one window --------------------------------------------------------------------------
    def encode_window(self, x):
        """x [B, 3, 1+k*tf, H, W] -> continuous bottleneck [B, latent_channels, 1+k, h, w]."""
        y = self.patcher.patch(x)
        return self.encoder(y / self.band_scale if self.cfg.whiten != "none" else y)

    def quantize(self, z):
        """Bottleneck -> (codes, indices) for DV; identity for CV (indices None)."""
        if not self.cfg.discrete:
            return z, None
        return self.fsq(self.quant_conv(z))

    def decode_window(self, latent):
        z = self.post_quant_conv(latent) if self.cfg.discrete else latent
        y = self.decoder(z)
        return self.patcher.unpatch(y * self.band_scale if self.cfg.whiten == "both" else y)

    def forward(self, x):
        """Training pass on one window: x -> (reconstruction, codes or latent)."""
        latent, _ = self.quantize(self.encode_window(x))
        return self.decode_window(latent), latent

    # -- public API: any length --------------------------------------------------------------
    def _pad_time(self, x):
        T = x.shape[2]
        tf = self.cfg.temporal_compression
        pad = (-(T - 1)) % tf
        return torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], 2) if pad else x

    @torch.no_grad()
    def encode(self, x: torch.Tensor):
        """video [B, 3, T, H, W] in [-1, 1] -> CV latent [B, Z, t, h, w] or DV (indices [B, t, h, w], codes [B, 6, t, h, w])."""
        self.check_video(x)
        x = self._pad_time(x)
        win = self.cfg.window
        outs = []
        for s in range(0, x.shape[2], win):  # independent windows (see module docstring)
            chunk = self._pad_time(x[:, :, s : s + win])
            outs.append(self.quantize(self.encode_window(chunk))[0])
        latent = torch.cat(outs, 2)
        if self.cfg.discrete:
            return self.fsq.codes_to_indices(latent), latent
        return latent

    @torch.no_grad()
    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """CV latent, DV codes [B, 6, t, h, w], DV indices int64 [B, t, h, w] or DV `encode`'s (indices, codes)
        -> video [B, 3, T, H, W] in [-1, 1]."""
        if isinstance(z, tuple):  # decode(encode(x)) for both kinds
            z = z[0]
        if self.cfg.discrete and not z.dtype.is_floating_point:
            z = self.fsq.indices_to_codes(z)
        if z.dim() != 5 or z.shape[1] != self.cfg.code_dim:
            raise ValueError(f"latent must be [B, {self.cfg.code_dim}, t, h, w] for this tokenizer, got {tuple(z.shape)}")
        lat_win = self.latent_frames(self.cfg.window)
        frames = [self.decode_window(z[:, :, s : s + lat_win]) for s in range(0, z.shape[2], lat_win)]
        video = torch.cat(frames, 2).clamp(-1, 1)
        return video[:, :, :num_frames] if num_frames is not None else video

    def encode_image(self, x: torch.Tensor):
        """image [B, 3, H, W] -> the latent of a one-frame video."""
        if x.dim() != 4:
            raise ValueError(f"image must be [B, 3, H, W], got shape {tuple(x.shape)}")
        return self.encode(x.unsqueeze(2))

    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z, num_frames=1)[:, :, 0]
