import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from kinema.tokenize.evaluate import _nal_payload_bytes, evaluate_h264, evaluate_video, h264_at_bpp, h264_roundtrip


def test_sei_units_are_not_counted():
    sps = b"\x00\x00\x00\x01\x67" + b"\xaa" * 10
    sei = b"\x00\x00\x01\x06" + b"x264 - core" * 20
    idr = b"\x00\x00\x01\x65" + b"\xbb" * 30
    assert _nal_payload_bytes(sps + sei + idr) == (3 + 1 + 10) + (3 + 1 + 30)


def test_h264_rate_falls_and_error_grows_with_crf():
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 9, 0)
    frames[:, 8:16, :] = np.arange(9)[:, None, None, None] * 20
    lo, nlo = h264_roundtrip(frames, 18)
    hi, nhi = h264_roundtrip(frames, 45)
    assert lo.shape == frames.shape and nhi < nlo
    err = lambda d: np.abs(d.astype(int) - frames).mean()  # noqa: E731
    assert err(lo) < err(hi)


def test_h264_shrunk_reaches_lower_rates_and_keeps_the_clip_size():
    """--h264-downscale 2: coded at half size and grown back, rate per pixel of the original clip; on a smooth
    clip it costs fewer bits than full size at the same CRF and still reconstructs it closely."""
    yy, xx = np.mgrid[0:32, 0:32]
    frames = np.stack([np.stack([(xx * 6 + t * 4) % 256, yy * 7, (xx + yy) * 3], -1) for t in range(9)]).astype(np.uint8)
    clips = {"s": [frames]}
    full = evaluate_h264(clips, crfs=(30,), progress=False)["curve"][0]
    half = evaluate_h264(clips, crfs=(30,), progress=False, downscale=2)
    assert half["downscale"] == 2 and "1/2 size" in half["convention"]
    half = half["curve"][0]
    assert half["bpp"] < full["bpp"]
    assert half["per_scenario"]["s"]["bpp"] == pytest.approx(half["bpp"])
    assert half["mean"]["psnr"] > 20


def test_rate_interpolation():
    curve = [{"bpp": 0.1, "mean": {"psnr": 30.0, "ssim": 0.9}}, {"bpp": 0.4, "mean": {"psnr": 40.0, "ssim": 0.98}}]
    mid = h264_at_bpp(curve, 0.2)
    assert mid["psnr"] == pytest.approx(35.0) and not mid["at_lowest_rate"]
    low = h264_at_bpp(curve, 0.05)
    assert low["at_lowest_rate"] and low["psnr"] == 30.0 and low["bpp"] == 0.1
    # one scenario on its own curve: its own rates and quality, not the pooled ones
    for c, (b, q) in zip(curve, [(0.02, 20.0), (0.08, 24.0)]):
        c["per_scenario"] = {"s": {"bpp": b, "psnr": q, "ssim": 0.5}}
    own = h264_at_bpp(curve, 0.04, scenario="s")
    assert own["psnr"] == pytest.approx(22.0) and own["bpp"] == 0.04 and not own["at_lowest_rate"]


def test_video_eval_runs_on_the_models_device_under_its_autocast(monkeypatch):
    """`tokenizer eval --device cuda --dtype bf16`: the clips must reach the model's device and bf16 autocast must
    be that device's (a "cpu" autocast leaves a GPU model in fp32). "meta" stands in for a GPU here."""
    seen = []

    def autocast(device_type, dtype=None, enabled=True):
        seen.append(("autocast", device_type, enabled))
        return contextlib.nullcontext()

    class Elsewhere(nn.Module):  # a stand-in tokenizer whose weights are not on the CPU
        cfg = SimpleNamespace(discrete=False, spatial_compression=8, code_dim=16)

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1, device="meta"))

        def encode(self, x):
            seen.append(("encode", x.device.type))
            return x

        def decode(self, z, num_frames):
            return torch.zeros(z.shape[0], 3, num_frames, 16, 16)

        def latent_frames(self, T):
            return 1 + (T - 1) // 4

    monkeypatch.setattr(torch, "autocast", autocast)
    out = evaluate_video(Elsewhere(), {"s": [np.full((5, 16, 16, 3), 128, np.uint8)]}, dtype="bf16", progress=False)
    assert seen == [("autocast", "meta", True), ("encode", "meta")]
    assert out["latent_shape"] == [16, 2, 2, 2]
