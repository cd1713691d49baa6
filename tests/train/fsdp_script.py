"""The toy model the FSDP tests shard, and the script torchrun launches for them.

    python -m torch.distributed.run --nproc_per_node 2 tests/train/fsdp_script.py [--spare] OUT [OUT ...]

trains ToyStack (--spare: with a layer no sample uses) with sharding="fsdp"
for 5 steps, a global batch of 8 (2 ranks × 2 micro-batches × 2 samples),
into each OUT in turn, resuming from what an OUT already holds. The test
trains the same run in one process and compares.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from kinema.train import TrainConfig, Trainer, cleanup_distributed
from tests.train.ddp_script import IN, OUT, ToyRegression, mse_loss, toy_config

HIDDEN = 9  # odd: FSDP's 2 shards of a dimension are uneven (5 + 4 rows, one padded)


def routed(x: torch.Tensor) -> torch.Tensor:
    """[B, IN] -> bool [B]: the samples the second expert of every block takes (about a third)."""
    return x[:, 0] > 0.5


class Block(nn.Module):
    """x + GELU(expert(LayerNorm(x))), with two experts routed by sample, like the MoT's: a rank whose
    micro-batch routes nothing to `alt` leaves its weights without a gradient (an unused parameter)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(HIDDEN)
        self.main, self.alt = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x, alt):  # [B, HIDDEN], bool [B] -> [B, HIDDEN]
        h = self.norm(x)
        y = self.main(h)
        if alt.any():
            y = torch.where(alt[:, None], self.alt(h), y)
        return x + nn.functional.gelu(y)


class ToyStack(nn.Module):
    """IN -> HIDDEN -> 2 Blocks in `layers` (FSDP's default units) -> LayerNorm -> OUT (the root's weights)."""

    def __init__(self, depth: int = 2, spare: bool = False):
        super().__init__()
        if spare:  # never used: no gradient in one process, so no AdamW state in its checkpoints
            self.spare = nn.Linear(HIDDEN, HIDDEN)
        self.inp = nn.Linear(IN, HIDDEN)
        self.layers = nn.ModuleList(Block() for _ in range(depth))
        self.norm = nn.LayerNorm(HIDDEN)
        self.out = nn.Linear(HIDDEN, OUT)

    def forward(self, x):  # [B, IN] -> [B, OUT]
        alt, h = routed(x), self.inp(x)
        for layer in self.layers:
            h = layer(h, alt)
        return self.out(self.norm(h))


def routed_loss(model, batch):
    """The toy MSE; the routed samples' MSE is logged only when a micro-batch has some, so ranks log different keys
    (like the world model's per-modality losses)."""
    err = (model(batch["x"]).float() - batch["y"]).pow(2)
    alt = routed(batch["x"])
    return err.mean(), {"mse/alt": err[alt].mean().item()} if alt.any() else {}


def eval_loss(model):
    data = ToyRegression()
    return {"loss": mse_loss(model, {"x": data.x, "y": data.y})[0].item()}


FSDP_RUN = dict(steps=5, grad_accum=2, sharding="fsdp")  # ckpt_every=3: checkpoints at steps 3 and 5


def train_stack(out, spare: bool = False, **overrides):
    """Seed, build ToyStack and train it (FSDP under torchrun, unsharded in one process); returns OUT/final."""
    config: TrainConfig = toy_config(out, **{**FSDP_RUN, **overrides})
    torch.manual_seed(config.seed)
    trainer = Trainer(ToyStack(spare=spare), routed_loss, ToyRegression(), config, {"hidden": HIDDEN}, kind="toy",
                      eval_fn=eval_loss, eval_every=2, find_unused_parameters=True)  # fmt: skip
    return trainer.fit()


if __name__ == "__main__":
    torch.set_num_threads(1)
    spare = sys.argv[1] == "--spare"
    for out in sys.argv[1 + spare :]:
        train_stack(out, spare=spare)
    cleanup_distributed()
