"""Are the camera's poses (or the arm's actions) in what the world model sees? A probe trained from scratch on the
same latents.

Legend: N clips, C latent channels, t latent frames, h/w latent grid, R = 32 action rows, A = 9 pose numbers (10
arm numbers).

The world model's inverse dynamics on camera motion is level with the mean action on held-out paths
(BENCHMARKS.md, "Sixteen draws for inverse dynamics"). Either the CV latents of a 33-frame clip do not carry
where the camera went, or the model has not learned to read it. This trains a small transformer from scratch
on the latents of the same training paths the world model saw (`kinema worlds generate --scenario camera_motion`
with seeds 0 (48 episodes) and 2 (480), recipes/tokenizer_data.sh and world_model_data.sh, simulated here in
memory) to output the 32 poses (rows 1..32, `kinema.eval.predictor.inverse_dynamics_targets`), and scores it on the
held-out paths of `kinema eval actions` against the same mean action:

  python scripts/probe_camera_pose.py --heldout 90
  python scripts/probe_camera_pose.py --heldout 90 --extra-paths 4000   # with 8.6x the training paths

--arm asks the same of the arm (the world model's inverse dynamics does not read the hand's turn: BENCHMARKS.md,
"Inverse dynamics recalibrated"): the tabletop episodes it trained on (seeds 0 and 2 expert, 3 random, 184 a task),
each clip's first 33 frames and the evaluation's window (`clip_start`), the first camera; held out the same window
of the evaluation's episodes, scored per task against the mean action.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from kinema.eval.actions import GROUPS, clip_start
from kinema.eval.baselines import MeanAction
from kinema.eval.data import heldout_seed
from kinema.eval.predictor import inverse_dynamics_targets
from kinema.tokenize.data import to_model
from kinema.tokenize.load import load_tokenizer
from kinema.worlds.generate import episode_seed
from kinema.worlds.registry import get_world
from kinema.worlds.rollout import rollout

CLIP = 33


def encode(items, tokenizer, desc: str, windows: str = "first"):
    """items [(world, seed, policy)] -> latents [N, C, t, h, w], actions [N, R, A]: the first camera's 33 frames from
    frame 0 ("first"), the evaluation's window ("eval") or both ("both")."""
    lat, poses, batch = [], [], []

    def flush():
        if batch:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                lat.append(tokenizer.encode(torch.stack(batch)).float())
            batch.clear()

    for name, s, policy in tqdm(items, desc=desc, unit="episode"):
        world = get_world(name)
        ep = rollout(world, s, size=64, policy=policy)
        timing = "at" if name == "camera_motion" else "after"
        starts = {"first": [0], "eval": [clip_start(ep, CLIP)], "both": [0, clip_start(ep, CLIP)]}[windows]
        for t in starts:
            batch.append(to_model(ep.frames[ep.cameras[0]][t : t + CLIP]))
            poses.append(torch.as_tensor(inverse_dynamics_targets(ep.action[t : t + CLIP], timing), dtype=torch.float32))
            if len(batch) == 16:
                flush()
    flush()
    return torch.cat(lat), torch.stack(poses)


class Probe(nn.Module):
    """Each latent frame flattened and embedded; a transformer across the clip's latent frames; each latent frame
    after the first gives the 4 pose rows of its 4 video frames."""

    def __init__(self, frame_dim: int, t: int, dims: int, width: int = 256, depth: int = 3):
        super().__init__()
        self.embed = nn.Sequential(nn.LayerNorm(frame_dim), nn.Linear(frame_dim, width), nn.GELU(), nn.Linear(width, width))
        self.pos = nn.Parameter(torch.randn(t, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, 0.1, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, 4 * dims)
        self.dims = dims

    def forward(self, z):  # [B, C, t, h, w] -> [B, 4 (t - 1), A]
        x = self.embed(z.permute(0, 2, 1, 3, 4).flatten(2)) + self.pos
        return self.head(self.body(x)[:, 1:]).reshape(len(z), -1, self.dims)


def ratios(pred, target, mean, timing: str) -> dict:
    out = {}
    for g, (a, b) in GROUPS[timing].items():
        base = ((mean[a:b] - target[..., a:b]) ** 2).mean()
        if base > 0:
            out[g] = float(((pred[..., a:b] - target[..., a:b]) ** 2).mean() / base)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", default="checkpoints/tokenizer-cv4x8x8")
    p.add_argument("--heldout", type=int, default=90, help="held-out paths (kinema eval actions' episodes 0..N-1)")
    p.add_argument("--extra-paths", type=int, default=0,
                   help="more training episodes than the world model saw (seed 5; a task with --arm), to tell data "
                        "from capacity")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arm", action="store_true", help="the arm's actions on the tabletop instead of the camera's poses")
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    tok = load_tokenizer(a.tokenizer)
    t0 = time.time()
    if a.arm:
        worlds, timing = ("push", "pick_place", "stack"), "after"
        train = [(w, episode_seed(s, i), pol) for w in worlds for s, n, pol in ((0, 16, "expert"), (2, 120, "expert"),
                                                                               (3, 48, "random")) for i in range(n)]
        train += [(w, episode_seed(5, i), "expert") for w in worlds for i in range(a.extra_paths)]
        zx, yx = encode(train, tok, "training episodes", "both")
        held = {w: encode([(w, heldout_seed(i), "expert") for i in range(a.heldout)], tok, f"held-out {w}", "eval")
                for w in worlds}
    else:
        worlds, timing = ("camera_motion",), "at"
        train = [("camera_motion", episode_seed(s, i), "expert") for s, n in ((0, 48), (2, 480), (5, a.extra_paths))
                 for i in range(n)]
        zx, yx = encode(train, tok, "training paths")
        held = {"camera_motion": encode([("camera_motion", heldout_seed(i), "expert") for i in range(a.heldout)], tok,
                                        "held-out paths")}
    mu, sd = yx.mean((0, 1)), yx.std((0, 1)).clamp_min(1e-3)
    zmu, zsd = zx.mean(), zx.std()
    probe = Probe(zx.shape[1] * zx.shape[3] * zx.shape[4], zx.shape[2], yx.shape[-1])
    opt = torch.optim.AdamW(probe.parameters(), lr=5e-4, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-4, total_steps=a.steps, pct_start=0.05)
    means = {w: torch.as_tensor(MeanAction().mean(w, timing)) for w in worlds}

    def held_out() -> str:
        probe.eval()
        with torch.no_grad():
            cells = []
            for w, (zh, yh) in held.items():
                r = ratios(probe((zh - zmu) / zsd) * sd + mu, yh, means[w], timing)
                cells.append(f"{w}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()))
        probe.train()
        return "; ".join(cells)

    g = torch.Generator().manual_seed(a.seed)
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, len(zx), (64,), generator=g)
        loss = ((probe((zx[idx] - zmu) / zsd) - (yx[idx] - mu) / sd) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == a.steps:
            print(f"step {step}: train loss {loss.item():.3f}; held-out MSE / the mean action's: {held_out()}",
                  flush=True)
    print(f"{len(train)} training episodes ({len(zx)} clips), {a.heldout} held-out a world, "
          f"{sum(x.numel() for x in probe.parameters()) / 1e6:.2f}M parameters, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
