"""Regression tests of the shipped tokenizers against the outputs saved beside them (expected.json)."""

import json
from pathlib import Path

import pytest
import torch

from kinema.tokenize.evaluate import REGRESSION_CLIP, regression_outputs
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
