"""TokenBench-style evaluation of tokenizers on held-out world video, and the H.264 rate-distortion baseline.

Legend: T frames, H height, W width.

Video: every camera stream of up to `episodes` episodes per dataset (scenario),
cut into clips of `clip_len` frames; each clip is encoded and decoded whole, and
PSNR and SSIM are computed with the conventions of `kinema.eval.metrics` (PSNR on
[0, 1] per frame, averaged; SSIM as scikit-image, 7x7 uniform window). Figures
are means over clips per scenario, and the headline is the mean over scenarios
(every scenario weighs the same however many clips it has).

Rate: a DV token carries log2(prod(levels)) bits (15.97 for 64,000 codes), so
bits per pixel = tokens * bits / (T * H * W). H.264 (libx264, preset veryslow,
yuv444p, through PyAV) is swept over CRF on the same clips; its rate counts the
bytes of the coded slices and parameter sets, not x264's free-text SEI header
(~600 bytes of version string that would swamp a 64x64 clip) nor any container.
Its PSNR at the tokenizer's rate is interpolated on its rate-distortion curve.

Entropy-coded rate (DV, with `entropy_model`): H.264's bytes are entropy-coded (CABAC), a DV token's
fixed 15.97 bits are not. With the autoregressive world model as the entropy model
(kinema.model.ar_codec), each clip's rate is the code length that model promises (`bpp_entropy`,
teacher-forced), and the first `entropy_check` clips of every scenario are range-coded and decoded for
real: the indices must come back exactly, and their coded length is reported beside the promise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from fractions import Fraction

import av
import numpy as np
import torch
from tqdm import tqdm

from kinema.eval.metrics import psnr, ssim
from kinema.tokenize.data import find_datasets, to_model, to_uint8

H264_CRFS = (18, 22, 26, 30, 34, 38, 42, 46, 51)


def _nal_payload_bytes(packet: bytes) -> int:
    """Bytes of an Annex-B packet without its SEI NAL units (type 6)."""
    total, i, n = 0, 0, len(packet)
    starts = []
    while True:
        j = packet.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else n
        if s < n and packet[s] & 0x1F != 6:
            total += end - s + 3
    return total


def h264_roundtrip(frames: np.ndarray, crf: int, fps: int = 16) -> tuple[np.ndarray, int]:
    """uint8 [T, H, W, 3] -> (decoded uint8 [T, H, W, 3], coded bytes without SEI)."""
    T, H, W, _ = frames.shape
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv444p"
    enc.time_base = Fraction(1, fps)
    enc.options = {"crf": str(crf), "preset": "veryslow"}
    packets = []
    for t in range(T):
        f = av.VideoFrame.from_ndarray(frames[t], format="rgb24").reformat(format="yuv444p")
        f.pts = t
        packets += enc.encode(f)
    packets += enc.encode(None)
    nbytes = sum(_nal_payload_bytes(bytes(p)) for p in packets)
    dec = av.CodecContext.create("h264", "r")
    out = []
    for p in packets:
        out += [fr.to_ndarray(format="rgb24") for fr in dec.decode(p)]
    out += [fr.to_ndarray(format="rgb24") for fr in dec.decode(None)]
    if len(out) != T:
        raise RuntimeError(f"H.264 round trip returned {len(out)} frames for {T}")
    return np.stack(out), nbytes


def held_out_clips(data, clip_len: int, episodes: int = 6):
    """{scenario: [uint8 [clip_len, H, W, 3], ...]} from every camera of the first `episodes` episodes."""
    from kinema.data.reader import EpisodeStore

    clips = defaultdict(list)
    for path in find_datasets(data):
        store = EpisodeStore(path)
        for i in range(min(episodes, len(store))):
            a = store.read(i, masks=False, audio=False)
            for cam in store.cameras:
                f = a[f"frames/{cam}"]
                clips[path.name] += [f[s : s + clip_len] for s in range(0, len(f) - clip_len + 1, clip_len)]
    if not clips:
        raise ValueError(f"--data {data}: no clip of {clip_len} frames")
    return dict(clips)


def _scores(pred: np.ndarray, target: np.ndarray) -> dict:
    return {"psnr": psnr(pred, target).value, "ssim": ssim(pred, target).value}


def _summarise(per_clip: dict[str, list[dict]]) -> dict:
    per_scenario = {s: {k: float(np.mean([c[k] for c in v])) for k in v[0]} | {"clips": len(v)} for s, v in per_clip.items()}
    keys = [k for k in next(iter(per_scenario.values())) if k != "clips"]
    return {"per_scenario": per_scenario, "mean": {k: float(np.mean([s[k] for s in per_scenario.values()])) for k in keys}}


@torch.no_grad()
def evaluate_video(model, clips: dict, *, dtype: str = "fp32", batch: int = 8, progress: bool = True,
                   entropy_model=None, entropy_check: int = 1) -> dict:
    """Reconstruction quality of a video tokenizer on held-out clips, per scenario; with entropy_model (an
    ARWorldModel over this DV tokenizer's codes) also each clip's entropy-coded rate (module docstring)."""
    cfg = model.cfg
    device = next(model.parameters()).device
    if entropy_model is not None:
        _check_entropy_model(model, entropy_model)
    per_clip, codes = defaultdict(list), defaultdict(list)
    bar = tqdm(total=sum(len(v) for v in clips.values()), desc="tokenizer eval", unit="clip", disable=not progress)
    for scen, vids in clips.items():
        for s in range(0, len(vids), batch):
            x = torch.stack([to_model(v) for v in vids[s : s + batch]]).to(device)  # [B, 3, T, H, W]
            # autocast on the model's device: a "cpu" autocast leaves a GPU run in fp32 whatever --dtype says
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
                z = model.encode(x)
                y = model.decode(z[0] if cfg.discrete else z, num_frames=x.shape[2])  # DV decodes from indices
            for v, r in zip(vids[s : s + batch], y):
                per_clip[scen].append(_scores(to_uint8(r), v))
            if entropy_model is not None:
                codes[scen].append(z[0].cpu())
            bar.update(len(vids[s : s + batch]))
    bar.close()
    T, H, W = next(iter(clips.values()))[0].shape[:3]
    checked = _entropy_rates(entropy_model, codes, per_clip, T * H * W, entropy_check, progress) if codes else None
    out = _summarise(per_clip)
    t = model.latent_frames(T)
    h, w = H // cfg.spatial_compression, W // cfg.spatial_compression
    out["latent_shape"] = [cfg.code_dim, t, h, w]
    if cfg.discrete:
        out["bits_per_token"] = model.fsq.bits_per_token
        out["bpp"] = t * h * w * model.fsq.bits_per_token / (T * H * W)
    if checked is not None:
        out["entropy_coded"] = checked
    out["convention"] = ("PSNR on [0,1] per frame averaged (dB); SSIM skimage 7x7 uniform window, data_range=1; "
                         "mean over clips per scenario, then over scenarios")
    return out


def _check_entropy_model(tokenizer, ar) -> None:
    cfg, acfg = tokenizer.cfg, ar.config
    if not cfg.discrete:
        raise ValueError("entropy model: only a discrete (DV) tokenizer has codes to entropy-code")
    if tuple(acfg.fsq_levels) != tuple(cfg.fsq_levels) or acfg.temporal_compression != cfg.temporal_compression:
        raise ValueError(f"entropy model: it predicts FSQ levels {tuple(acfg.fsq_levels)} at temporal compression "
                         f"{acfg.temporal_compression}; the tokenizer has {tuple(cfg.fsq_levels)} at "
                         f"{cfg.temporal_compression}")


def _entropy_rates(ar, codes: dict, per_clip: dict, pixels: int, check: int, progress: bool) -> dict:
    """Add bpp_entropy (the model's promised rate) to every clip's scores; range-code and decode the first
    `check` clips of each scenario -> {"clips", "coded_bits", "promised_bits"} over those."""
    from kinema.model.ar_codec import compress, decompress, ideal_bits

    fps = ar.config.ref_fps
    coded = promised = n = 0
    for scen, chunks in tqdm(codes.items(), desc="entropy coding", unit="scenario", disable=not progress):
        idx = torch.cat(chunks).to(ar.codebook.device)
        bits = ideal_bits(ar, idx, fps=fps)
        for scores, b in zip(per_clip[scen], bits.tolist()):
            scores["bpp_entropy"] = b / pixels
        for i in range(min(check, len(idx))):
            data = compress(ar, idx[i], fps=fps)
            if not torch.equal(decompress(ar, data).to(idx.device), idx[i]):
                raise RuntimeError(f"entropy coding: clip {i} of {scen} did not decode to its indices")
            coded, promised, n = coded + 8 * len(data), promised + bits[i].item(), n + 1
    return {"clips": n, "coded_bits": coded, "promised_bits": promised}


def _resize(frames: np.ndarray, size: tuple[int, int], interpolation) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, size, interpolation=interpolation) for f in frames])


def evaluate_h264(clips: dict, crfs=H264_CRFS, progress: bool = True, downscale: int = 1) -> dict:
    """The H.264 rate-distortion curve on the same clips: per CRF, bpp and quality per scenario. downscale > 1:
    each clip is shrunk by that factor (area average) before coding and grown back (bicubic) after, the way
    a codec reaches rates its coarsest quantizer cannot; rate and quality stay per pixel of the original."""
    import cv2

    curve = []
    for crf in tqdm(crfs, desc="H.264 sweep" + (f" at 1/{downscale} size" if downscale > 1 else ""), unit="crf",
                    disable=not progress):
        per_clip, bits, pixels = defaultdict(list), 0, 0
        for scen, vids in clips.items():
            for v in vids:
                H, W = v.shape[1:3]
                if downscale > 1:
                    small = _resize(v, (W // downscale, H // downscale), cv2.INTER_AREA)
                    dec, nbytes = h264_roundtrip(small, crf)
                    dec = _resize(dec, (W, H), cv2.INTER_CUBIC)
                else:
                    dec, nbytes = h264_roundtrip(v, crf)
                per_clip[scen].append(_scores(dec, v) | {"bpp": 8 * nbytes / (v.shape[0] * v.shape[1] * v.shape[2])})
                bits += 8 * nbytes
                pixels += v.shape[0] * v.shape[1] * v.shape[2]
        curve.append({"crf": crf, "bpp": bits / pixels} | _summarise(per_clip))
    return {"curve": curve, "downscale": downscale,
            "convention": "libx264 yuv444p preset veryslow, CRF sweep; rate without SEI/container"
                          + (f"; coded at 1/{downscale} size (INTER_AREA), grown back bicubic" if downscale > 1 else "")}


def h264_at_bpp(curve: list[dict], bpp: float, scenario: str | None = None) -> dict:
    """H.264's PSNR/SSIM at `bpp`, interpolated linearly in log(bpp) between sweep points (of one scenario's own
    curve, its rate and quality, when named); if H.264 cannot reach so low a rate, its lowest-rate point (a higher
    rate: an advantage to H.264) with `at_lowest_rate` set."""
    if scenario is not None:
        curve = [{"bpp": c["per_scenario"][scenario]["bpp"], "mean": c["per_scenario"][scenario]} for c in curve]
    pts = sorted(curve, key=lambda c: c["bpp"])
    if bpp <= pts[0]["bpp"]:
        return {"psnr": pts[0]["mean"]["psnr"], "ssim": pts[0]["mean"]["ssim"], "bpp": pts[0]["bpp"], "at_lowest_rate": True}
    for a, b in zip(pts, pts[1:]):
        if a["bpp"] <= bpp <= b["bpp"]:
            f = (math.log(bpp) - math.log(a["bpp"])) / (math.log(b["bpp"]) - math.log(a["bpp"]))
            return {k: a["mean"][k] + f * (b["mean"][k] - a["mean"][k]) for k in ("psnr", "ssim")} | {"bpp": bpp, "at_lowest_rate": False}
    return {"psnr": pts[-1]["mean"]["psnr"], "ssim": pts[-1]["mean"]["ssim"], "bpp": pts[-1]["bpp"], "at_lowest_rate": False}


@torch.no_grad()
def evaluate_audio(model, data, *, episodes: int = 6, progress: bool = True) -> dict:
    """SNR (dB) of whole sound tracks reconstructed by the audio tokenizer, per scenario (silent tracks skipped)."""
    from kinema.data.reader import EpisodeStore
    from kinema.tokenize.train import snr_db

    per = defaultdict(list)
    for path in tqdm(find_datasets(data), desc="audio eval", unit="set", disable=not progress):
        store = EpisodeStore(path)
        for i in range(min(episodes, len(store))):
            a = torch.from_numpy(store.read(i, frames=False, masks=False, audio=True)["audio"])[None].clamp(-1, 1)
            if float(a.abs().max()) < 1e-3:
                continue
            y = model.decode(model.encode(a), num_samples=a.shape[1])
            per[path.name].append({"snr": snr_db(y, a)})
    if not per:
        raise ValueError(f"--data {data}: no episode with sound")
    return _summarise(per) | {"convention": "SNR = 10 log10(sum x^2 / sum (x - x_hat)^2) per track, dB; mean per scenario, then over scenarios"}


REGRESSION_CLIP = dict(scenario="dominoes", seed=4242, camera="front")


def regression_clip():
    """A fixed held-out episode simulated on the spot (deterministic): frames uint8 [33, 64, 64, 3] and its sound."""
    from kinema.worlds.registry import get_world
    from kinema.worlds.rollout import rollout

    ep = rollout(get_world(REGRESSION_CLIP["scenario"]), REGRESSION_CLIP["seed"], size=64)
    return ep.frames[REGRESSION_CLIP["camera"]], ep.audio.astype(np.float32)


@torch.no_grad()
def regression_outputs(model) -> dict:
    """What a shipped tokenizer produces on the regression clip: its quality and (DV) its token indices."""
    from kinema.tokenize.train import snr_db

    frames, sound = regression_clip()
    if model.__class__.__name__ == "AudioTokenizer":
        a = torch.from_numpy(sound)[None].clamp(-1, 1)
        return {"snr": snr_db(model.decode(model.encode(a), num_samples=a.shape[1]), a)}
    x = to_model(frames)[None]
    z = model.encode(x)
    y = to_uint8(model.decode(z[0] if model.cfg.discrete else z, num_frames=len(frames))[0])
    out = {"psnr": psnr(y, frames).value, "ssim": ssim(y, frames).value}
    if model.cfg.discrete:
        out["indices"] = z[0].flatten().tolist()
    return out
