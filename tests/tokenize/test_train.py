"""How the tokenizer recipes (kinema.tokenize.train) use the shared trainer."""

import pytest
import torch

from kinema.tokenize.train import _eval_fn, psnr_db, video_loss
from kinema.tokenize.video import KIND, VideoTokenizer, get_preset
from kinema.train.config import TrainConfig
from kinema.train.trainer import Trainer


def test_heldout_curve_is_measured_on_the_ema_weights(tmp_path):
    """The held-out PSNR in the log is that of the EMA weights (the ones that ship), not the live ones."""
    torch.manual_seed(0)
    cfg = get_preset("cv4x8x8-tiny")
    model = VideoTokenizer(cfg)
    clips = torch.rand(4, 3, 5, 16, 16) * 2 - 1  # [N, 3, T, H, W]
    evaluate = _eval_fn(clips[:2], psnr_db)
    train = TrainConfig(out=str(tmp_path), steps=0, batch_size=2, device="cpu")
    trainer = Trainer(model, video_loss, list(clips), train, cfg, kind=KIND, eval_fn=evaluate, eval_every=1)
    ema = evaluate(model)["heldout"]  # the EMA starts as a copy of the weights
    with torch.no_grad():  # the live weights move away from their average
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    live = evaluate(model)["heldout"]
    assert abs(live - ema) > 0.01
    assert trainer._evaluate()["eval/heldout"] == pytest.approx(ema, abs=1e-6)
    assert evaluate(model)["heldout"] == live  # and the live weights are back afterwards
