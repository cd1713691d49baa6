"""The toy problem the train tests share, and the script torchrun launches for the DDP test.

    python -m torch.distributed.run --nproc_per_node 2 tests/train/ddp_script.py OUT

trains the tiny MLP for 5 steps with a global batch of 8 (2 ranks × 2
micro-batches × 2 samples) into OUT. The test trains the same problem in one
process and compares the weights.

Legend: N dataset items, B batch.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from kinema.train import TrainConfig, Trainer, cleanup_distributed

IN, HIDDEN, OUT = 4, 16, 2


class ToyMLP(nn.Module):
    """4 -> 16 -> 2 with a LayerNorm (a 1-D param with no weight decay); no BatchNorm, no dropout."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(IN, HIDDEN), nn.LayerNorm(HIDDEN), nn.GELU(), nn.Linear(HIDDEN, OUT))

    def forward(self, x):  # [B, IN] -> [B, OUT]
        return self.net(x)


class ToyRegression(Dataset):
    """A fixed synthetic regression: y = sin(x @ W) (+ a little noise), N items of {"x": [IN], "y": [OUT]}."""

    def __init__(self, n: int = 40):
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, IN, generator=g)
        w = torch.randn(IN, OUT, generator=g)
        self.y = torch.sin(self.x @ w) + 0.01 * torch.randn(n, OUT, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def mse_loss(model, batch):
    pred = model(batch["x"])
    loss = F.mse_loss(pred.float(), batch["y"])
    return loss, {"mae": (pred.float() - batch["y"]).abs().mean().item()}


def toy_config(out, **overrides) -> TrainConfig:
    base = dict(out=str(out), steps=6, batch_size=8, lr=1e-2, warmup=2, ema_decay=0.9, ckpt_every=3, log_every=1)
    base["device"] = "cpu"
    return TrainConfig(**{**base, **overrides})


def train_toy(out, loss_fn=mse_loss, dataset=None, **overrides):
    """Seed, build the toy model and train it; returns OUT/final."""
    config = toy_config(out, **overrides)
    torch.manual_seed(config.seed)
    model = ToyMLP()
    trainer = Trainer(model, loss_fn, dataset or ToyRegression(), config, {"in": IN, "hidden": HIDDEN}, kind="toy")
    return trainer.fit()


DDP_RUN = dict(steps=5, grad_accum=2)  # the run the DDP test compares against a single process

if __name__ == "__main__":
    torch.set_num_threads(1)
    train_toy(sys.argv[1], **DDP_RUN)
    cleanup_distributed()
