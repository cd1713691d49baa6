"""Is where to move the arm in what the world model sees? A policy probe trained from scratch on the same latents.

Legend: N windows, C latent channels, t = 3 latent frames (9 video frames), h/w latent grid, A = 10 arm numbers.

The world model's policy mode, given the expert's last 9 frames and the 8 actions between them, predicts the next
8 actions with about 0.8 of the mean action's squared error on translation (scripts/policy_open_loop.py), and
in closed loop it never reaches a block. Either the CV latents of 9 frames do not carry where the block is
relative to the gripper, or the model has not learned to read it. This trains a small transformer from scratch
(behaviour cloning) on the same expert episodes the world model saw (seeds 0 and 2 of recipes/tokenizer_data.sh
and recipes/world_model_data.sh, simulated here in memory; windows every 8 frames) and scores both on the same
held-out windows of scripts/policy_open_loop.py (frames 16, 32, 48, 64), against the same mean action:

  python scripts/probe_policy.py
  python scripts/probe_policy.py --extra 400   # with 400 more expert episodes a task (seed 5)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from kinema.eval.actions import GROUPS
from kinema.eval.data import heldout_seed
from kinema.tokenize.data import to_model
from kinema.tokenize.load import load_tokenizer
from kinema.worlds.generate import episode_seed
from kinema.worlds.registry import get_world
from kinema.worlds.rollout import rollout

TASKS = ("push", "pick_place", "stack")
CTX, CHUNK, FIRST = 9, 8, 200  # given frames, actions predicted, scripts/policy_open_loop.py's held-out seeds


def windows(task_seeds, tokenizer, starts, desc):
    """-> latents [N, C, 3, h, w], history [N, 8, A], target [N, 8, A], task [N], raw (frames, history, text) kept
    for the world model's comparison."""
    lat, hist, tgt, task, raw, batch = [], [], [], [], [], []

    def flush():
        if batch:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                lat.append(tokenizer.encode(torch.stack(batch)).float())
            batch.clear()

    for k, w, s in tqdm(task_seeds, desc=desc, unit="episode"):
        ep = rollout(get_world(w), s, size=64)
        frames = ep.frames[ep.cameras[0]]
        for st in starts:
            clip = frames[st - CTX + 1 : st + 1]
            batch.append(to_model(clip))
            hist.append(torch.as_tensor(ep.action[st - CTX + 1 : st]))
            tgt.append(torch.as_tensor(ep.action[st : st + CHUNK]))
            task.append(k)
            raw.append((clip, ep.action[st - CTX + 1 : st], ep.task))
            if len(batch) == 32:
                flush()
    flush()
    return torch.cat(lat), torch.stack(hist).float(), torch.stack(tgt).float(), torch.tensor(task), raw


class Probe(nn.Module):
    def __init__(self, C: int, tokens: int, A: int = 10, D: int = 128, depth: int = 4):
        super().__init__()
        self.lat_in, self.act_in = nn.Linear(4 * C, D), nn.Linear(A, D)  # 2x2 latent patches a token
        self.pos = nn.Parameter(torch.randn(1, 1 + tokens // 4 + CTX - 1, D) * 0.02)
        self.task = nn.Embedding(len(TASKS), D)
        layer = nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, depth)
        self.out = nn.Linear(D, CHUNK * A)

    def forward(self, z, hist, task):  # z [B, C, t, h, w], hist [B, 8, A], task [B] -> [B, 8, A]
        B, C, t, h, w = z.shape
        patches = z.view(B, C, t, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, -1, 4 * C)
        x = torch.cat([self.task(task)[:, None], self.lat_in(patches), self.act_in(hist)], 1)
        return self.out(self.body(x + self.pos)[:, 0]).view(len(z), CHUNK, -1)


def ratios(pred, true, mean) -> dict:
    return {g: float(((pred[..., a:b] - true[..., a:b]) ** 2).sum() / ((mean[a:b] - true[..., a:b]) ** 2).sum())
            for g, (a, b) in GROUPS["after"].items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default="checkpoints/tokenizer-cv4x8x8")
    ap.add_argument("--model", default="checkpoints/world-model-small", help="the world model compared (none: skip)")
    ap.add_argument("--extra", type=int, default=0, help="more expert episodes a task (seed 5)")
    ap.add_argument("--heldout", type=int, default=30, help="held-out episodes a task")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    t0 = time.time()
    tok = load_tokenizer(a.tokenizer).eval()
    train = [(k, w, episode_seed(s, i)) for k, w in enumerate(TASKS) for s, n in ((0, 16), (2, 120), (5, a.extra))
             for i in range(n)]
    held = [(k, w, heldout_seed(FIRST + i)) for k, w in enumerate(TASKS) for i in range(a.heldout)]
    Z, H, Y, K, _ = windows(train, tok, range(CTX - 1, 97 - CHUNK, 8), "training windows")
    Zh, Hh, Yh, Kh, raw = windows(held, tok, (16, 32, 48, 64), "held-out windows")
    mu, sd = Y.reshape(-1, 10).mean(0), Y.reshape(-1, 10).std(0).clamp_min(1e-3)
    zmu, zsd = Z.mean((0, 2, 3, 4), keepdim=True), Z.std((0, 2, 3, 4), keepdim=True)
    norm = lambda z, h: ((z - zmu) / zsd, (h - mu) / sd)  # noqa: E731
    probe = Probe(Z.shape[1], Z[0, 0].numel())
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-4, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=a.steps, pct_start=0.05)
    for step in tqdm(range(a.steps), desc="probe", unit="step"):
        i = torch.randint(0, len(Z), (a.batch,))
        z, h = norm(Z[i], H[i])
        loss = ((probe(z, h, K[i]) - (Y[i] - mu) / sd) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    probe.eval()
    with torch.no_grad():
        pred = torch.cat([probe(*norm(Zh[j : j + 256], Hh[j : j + 256]), Kh[j : j + 256])
                          for j in range(0, len(Zh), 256)]) * sd + mu
    print(f"{len(train)} training episodes ({len(Z)} windows), final loss {loss.item():.3f}, {time.time() - t0:.0f} s")
    wm = None
    if a.model != "none":
        from kinema.model.pipeline import Pipeline
        from kinema.model.policy import WorldModelPolicy

        pol = WorldModelPolicy(Pipeline.from_pretrained(a.model, device="cpu"))
        wm = torch.stack([torch.as_tensor(pol.plan(c, h, text, seed=n // 4)[:CHUNK])
                          for n, (c, h, text) in enumerate(tqdm(raw, desc="world model", unit="window"))])
    for k, w in enumerate(TASKS):
        m = Kh == k
        line = f"{w}: probe " + ", ".join(f"{g} {v:.3f}" for g, v in ratios(pred[m], Yh[m], mu).items())
        if wm is not None:
            line += " | world model " + ", ".join(f"{g} {v:.3f}" for g, v in ratios(wm[m], Yh[m], mu).items())
        print(line, flush=True)


if __name__ == "__main__":
    main()
