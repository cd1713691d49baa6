"""Regression tests of the shipped tokenizers against the outputs saved beside them (expected.json)."""

import json
import re
from pathlib import Path

import pytest
import torch

from kinema.tokenize.data import to_model
from kinema.tokenize.evaluate import REGRESSION_CLIP, regression_clip, regression_outputs
from kinema.tokenize.load import load_tokenizer

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = ["tokenizer-cv4x8x8", "tokenizer-dv4x8x8", "tokenizer-audio"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_tokenizer_reproduces_its_saved_outputs(name):
    path = CHECKPOINTS / name
    expected = json.loads((path / "expected.json").read_text())
    assert expected["clip"] == REGRESSION_CLIP
    got = regression_outputs(load_tokenizer(path))
    for key in ("psnr", "ssim", "snr"):
        if key in expected:
            assert got[key] == pytest.approx(expected[key], abs=0.05 if key != "ssim" else 1e-3), key
    if "indices" in expected:  # bf16-stored weights, fp32 compute: allow a few codes to flip at rounding edges
        same = torch.tensor(got["indices"]) == torch.tensor(expected["indices"])
        assert same.float().mean() >= 0.98


def test_shipped_checkpoints_fit_the_budget():
    total = sum(f.stat().st_size for f in CHECKPOINTS.rglob("*") if f.is_file())
    assert total < 64 * 2**20
    assert not list(CHECKPOINTS.rglob("*.pt")) and not list(CHECKPOINTS.rglob("*.bin"))  # safetensors only


@pytest.mark.parametrize("name", ["tokenizer-cv4x8x8", "tokenizer-dv4x8x8"])
def test_shipped_video_tokenizer_is_causal_and_an_image_is_a_one_frame_video(name):
    """Latent j depends on frames <= j*tf only (video.py's docstring), so changing frame t leaves latents
    0 .. ceil(t/tf)-1 bit-identical on the shipped weights (tf=4: frame 12 -> latents 0..2 unchanged)."""
    m = load_tokenizer(CHECKPOINTS / name)
    tf = m.cfg.temporal_compression
    x = to_model(regression_clip()[0])[None]  # [1, 3, 33, 64, 64]: the regression episode, deterministic
    base = m.encode(x)
    for t in (1, 12, 32):
        changed = x.clone()
        changed[:, :, t] = -changed[:, :, t]
        got, j = m.encode(changed), -(-t // tf)  # j: the first latent frame that sees frame t
        if m.cfg.discrete:  # indices [B, t, h, w] and codes [B, 6, t, h, w]
            assert torch.equal(got[0][:, :j], base[0][:, :j]) and torch.equal(got[1][:, :, :j], base[1][:, :, :j]), t
            assert not torch.equal(got[0][:, j], base[0][:, j]), t  # the change does reach latent j
        else:
            assert torch.equal(got[:, :, :j], base[:, :, :j]), t
            assert not torch.allclose(got[:, :, j], base[:, :, j], atol=1e-3), t
    image, one = m.encode_image(x[:, :, 0]), m.encode(x[:, :, :1])
    if m.cfg.discrete:
        assert torch.equal(image[0], one[0]) and torch.equal(image[1], one[1])
        assert torch.equal(image[0], base[0][:, :1])
    else:
        assert torch.equal(image, one)
        # the first latent of the whole clip: the same sums in other kernel shapes, so equal to rounding only
        assert torch.allclose(image, base[:, :, :1], atol=1e-5)


def test_decoder_recipe_ships_the_runs_that_shipped():
    """recipes/tokenizer_decoders.sh reproduces checkpoints/: CV is the first decoder round (cv4x8x8-dec, 12,000
    steps; commit c9cc23c), not the second round, which stayed flat and was stopped (BENCHMARKS.md)."""
    text = (CHECKPOINTS.parent / "recipes" / "tokenizer_decoders.sh").read_text()
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    trained = dict(re.findall(r"^(?:THREADS=\d+ )?decoder \S+ (\S+) (\d+)", code, re.M))  # run -> steps
    shipped = dict(re.findall(r"--(cv|dv|audio) (\S+)", code.split("ship_tokenizers.py", 1)[1]))
    assert shipped == {"cv": "cv4x8x8-dec", "dv": "dv4x8x8-dec", "audio": "audio-dec"}
    assert {run: trained.get(run) for run in shipped.values()} == {"cv4x8x8-dec": "12000", "dv4x8x8-dec": "7000",
                                                                    "audio-dec": "8000"}
    assert set(trained) == set(shipped.values())  # nothing trained that does not ship
