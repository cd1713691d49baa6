"""Training recipes of the video and audio tokenizers on top of the one trainer (`kinema.train`).

Legend: B batch, T frames, H height, W width, N audio samples.

Video: mean squared error. Cosmos starts from L1, but on simulated scenes (flat
background, small objects) L1 stalls at the background-only solution: every
near-perfect background pixel still pushes with a full-size sign gradient, which
drowns the few object pixels; MSE's gradient grows with the error, so objects are
learned (measured: a conv autoencoder overfitting one dominoes clip stays at
25 dB with L1 or L1+MSE and reaches 32 dB with MSE in 600 steps). Perceptual and
adversarial terms need pretrained networks or large compression and are left out.
Audio: the waveform error normalised by the signal energy (1/SNR, the figure
reported) plus a small multi-resolution STFT magnitude loss for the spectral shape
of decays. Sparse impact sounds have the same L1 trap as sparse objects.
A fixed held-out batch is reconstructed every `eval_every` steps so the log has a
quality curve, not only a loss curve.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from kinema.train.config import TrainConfig
from kinema.train.trainer import Trainer


def psnr_db(recon: torch.Tensor, x: torch.Tensor, peak: float = 2.0) -> float:
    """PSNR of tensors in [-1, 1] (peak-to-peak 2), i.e. the same figure as on [0, 1] images."""
    mse = float(((recon.float().clamp(-1, 1) - x.float()) ** 2).mean())
    return 10 * math.log10(peak**2 / max(mse, 1e-12))


def video_loss(model, x):
    recon, _ = model(x)  # [B, 3, T, H, W]
    err = recon.float() - x
    mse = (err**2).mean()
    return mse, {"l1": err.detach().abs().mean().item(), "psnr": psnr_db(recon.detach(), x)}


STFT_SIZES = (256, 512, 1024)


def stft_loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    total = 0.0
    for n in STFT_SIZES:
        win = torch.hann_window(n, device=x.device)
        S = lambda a: torch.stft(a.float(), n, n // 4, window=win, return_complex=True).abs()  # noqa: E731
        a, b = S(recon), S(x)
        total = total + (a - b).abs().mean() + (torch.log(a + 1e-5) - torch.log(b + 1e-5)).abs().mean() * 0.1
    return total / len(STFT_SIZES)


def snr_db(recon: torch.Tensor, x: torch.Tensor) -> float:
    """Signal-to-noise ratio of a reconstruction: 10 log10(sum x^2 / sum (x - recon)^2)."""
    return 10 * math.log10(float((x.float() ** 2).sum()) / max(float(((x - recon.float()) ** 2).sum()), 1e-20))


def audio_loss(model, x):
    recon, _ = model(x)  # [B, N]
    err = recon.float() - x
    nmse = (err**2).sum() / (x**2).sum().clamp_min(1e-8)  # = 10^(-SNR/10): optimises SNR directly
    spec = stft_loss(recon, x)
    return nmse + 0.1 * spec, {"nmse": nmse.item(), "stft": spec.item(), "snr": snr_db(recon.detach(), x)}


def _eval_fn(batch: torch.Tensor, metric):
    """A closure reconstructing a fixed held-out batch. The trainer calls it inside `Trainer._evaluate`, which
    loads the EMA weights (the ones that ship) when the run keeps an EMA (ema_decay > 0, the default), and the
    live weights only with ema_decay 0; so the logged held-out curve is the EMA's."""

    def run(model) -> dict:
        was = model.training
        model.eval()
        with torch.no_grad():
            recon, _ = model(batch)
        model.train(was)
        return {"heldout": metric(recon, batch)}

    return run


def _start(init, kind: str, freeze_encoder: bool):
    """The tokenizer a run starts from: None (a fresh one), or the `kind` at folder `init`, its encoder frozen
    when `freeze_encoder` (then every latent it makes stays bit-identical while the decoder trains)."""
    from kinema.tokenize.load import load_tokenizer

    if init is None:
        return None
    model = load_tokenizer(init, kind=kind).float().train()
    for p in model.encoder_parameters() if freeze_encoder else ():
        p.requires_grad_(False)
    return model


WHITEN_CLIPS = 256  # training clips whose patch channels fix a whitened tokenizer's band_rms


def train_video_tokenizer(cfg, data, train: TrainConfig, *, clip_len: int = 17, heldout=None, eval_every: int = 200,
                          progress: bool = True, init=None, freeze_encoder: bool = False) -> Path:
    """Train a video tokenizer config on every camera stream under `data`; returns the exported final folder.

    `init`: start from this tokenizer folder's weights (its config replaces `cfg`). `freeze_encoder`: train
    the decoder only, so the latents, and every model trained on them, stay valid.
    """
    from kinema.tokenize.data import VideoClips, load_streams
    from kinema.tokenize.video import KIND, VideoTokenizer

    model = _start(init, KIND, freeze_encoder)
    cfg = model.cfg if model is not None else cfg
    if (clip_len - 1) % cfg.temporal_compression:
        raise ValueError(f"--clip-len must be 1 + k*{cfg.temporal_compression} for {cfg.compression}, got {clip_len}")
    streams, _ = load_streams(data, progress=progress)
    dataset = VideoClips(streams, clip_len, flip=True)
    if cfg.whiten != "none" and not cfg.band_rms:  # a fresh whitened run: fit its divisors (its own generator)
        from kinema.tokenize.video import fit_band_rms

        pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:WHITEN_CLIPS]
        cfg.band_rms = fit_band_rms(cfg, torch.stack([dataset[int(i)] for i in pick]))
    eval_fn = None
    if heldout:
        held, _ = load_streams(heldout, progress=progress, max_episodes=1)
        gen = torch.Generator().manual_seed(0)
        clips = VideoClips(held, clip_len)
        pick = torch.randperm(len(clips), generator=gen)[:8]
        eval_fn = _eval_fn(torch.stack([clips[int(i)] for i in pick]), psnr_db)
    torch.manual_seed(train.seed)
    model = model if model is not None else VideoTokenizer(cfg)
    trainer = Trainer(model, video_loss, dataset, train, cfg, kind=KIND, eval_fn=eval_fn, eval_every=eval_every)
    return trainer.fit()


def train_audio_tokenizer(cfg, data, train: TrainConfig, *, seconds: float = 1.0, heldout=None, eval_every: int = 200,
                          progress: bool = True, init=None, freeze_encoder: bool = False) -> Path:
    """Train an audio tokenizer config on every sound track under `data`; `init` and `freeze_encoder` as for
    `train_video_tokenizer`."""
    from kinema.tokenize.audio import KIND, AudioTokenizer
    from kinema.tokenize.data import AudioClips, load_streams

    model = _start(init, KIND, freeze_encoder)
    cfg = model.cfg if model is not None else cfg
    length = max(cfg.hop, int(round(seconds * cfg.sample_rate / cfg.hop)) * cfg.hop)
    _, sounds = load_streams(data, video=False, audio=True, progress=progress)
    if not sounds:
        raise ValueError(f"--data {data}: no episode has a sound track")
    dataset = AudioClips(sounds, length)
    eval_fn = None
    if heldout:
        _, held = load_streams(heldout, video=False, audio=True, progress=progress)
        clips = AudioClips(held, length, keep_silent=10**9)  # loud segments only: SNR of silence is meaningless
        pick = torch.randperm(len(clips), generator=torch.Generator().manual_seed(0))[:16]
        eval_fn = _eval_fn(torch.stack([clips[int(i)] for i in pick]), snr_db)
    torch.manual_seed(train.seed)
    model = model if model is not None else AudioTokenizer(cfg)
    trainer = Trainer(model, audio_loss, dataset, train, cfg, kind=KIND, eval_fn=eval_fn, eval_every=eval_every)
    return trainer.fit()
