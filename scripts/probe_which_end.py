"""Is "which end of the seesaw ends up lower?" in what the reasoner sees? Probes trained on its inputs.

Legend: N questions, t latent frames (keyframes), H/W pixels.

The reasoner answers with the box that started on the lower end. Whether that is the dropped box or the resting
one (the plank flipped or not) is a yes/no fact of the episode; a probe that learns it from a clip's keyframes
([t, H, W, 3], the last video frame of every latent frame, as the reasoner's pixel view reads them) shows the clip
holds the answer. Two views, each trained from scratch on reasoner shards (simulate_latents.py) and scored
on held-out ones (`kinema eval reason` writes them under OUT/latents):

  frames   a 4-layer CNN over all keyframes stacked as channels [3t, H, W], at full size or pooled (--pool 2:
           32x32, the resolution of the pixel view's 2x2 cells)
  tokens   a 3-layer transformer over the pixel view itself: each vision token's 16x16 pixels pooled to 2x2
           cells (192 numbers, sequence.pixel_patches), t*16 tokens with learned positions; --extra first|change
           puts beside each token the same cells in the first keyframe, or their change since the previous one

Mirroring left and right keeps the answer (the label is a role, not a side), so training clips are mirrored at
random.

  python scripts/probe_which_end.py --train outputs/runs/world-model-fresh-cpu{6,7,8}/shards \
      --test outputs/cand/cpu4-new/reason/latents --view frames
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from kinema.train.checkpoint import load_tensors, read_json

QUESTION = "Which end of the seesaw ends up lower?"


def load(roots: list[Path]):
    """-> keyframes uint8 [N, t, H, W, 3], label [N] (1: the dropped box's end is lower), camera per question."""
    x, y, cams = [], [], []
    for root in roots:
        files = [root] if root.suffix == ".safetensors" else sorted(root.glob("seesaw*.safetensors"))
        for f in files:
            keys = load_tensors(f)["keyframes"]
            for i, c in enumerate(read_json(f.with_suffix(".json"))["clips"]):
                caption = next(q["answer"] for q in c["questions"] if q["type"] == "caption")
                dropped = caption.split(" drops onto")[0].lower()  # "the red box"
                for q in c["questions"]:
                    if q["question"] == QUESTION:
                        x.append(keys[i])
                        y.append(int(q["answer"] == f"the end where {dropped} started"))
                        cams.append(c["camera"])
    if not x:
        raise SystemExit(f"no seesaw questions '{QUESTION}' in {[str(r) for r in roots]}")
    return torch.stack(x), torch.tensor(y), cams


class Frames(nn.Module):
    def __init__(self, t: int, pool: int):
        super().__init__()
        self.pool = pool
        layers, c = [], 3 * t
        for i, w in enumerate((64, 96, 128, 128)):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2) if i < 3 else nn.AdaptiveAvgPool2d(1)]
            c = w
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c, 2))

    def forward(self, keys):  # uint8 [B, t, H, W, 3] -> logits [B, 2]
        x = keys.float().div(127.5).sub(1).permute(0, 1, 4, 2, 3).flatten(1, 2)
        return self.net(F.avg_pool2d(x, self.pool) if self.pool > 1 else x)


class Tokens(nn.Module):
    def __init__(self, t: int, cell: int = 2, patch: int = 16, width: int = 128, extra: str = ""):
        super().__init__()
        self.cell, self.patch, self.extra = cell, patch, extra
        dim = 3 * (patch // cell) ** 2 * (2 if extra else 1)
        self.embed = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, width))
        self.pos = nn.Parameter(torch.randn(t * (64 // patch) ** 2, width) * 0.02)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, 0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        self.head = nn.Linear(width, 2)

    def forward(self, keys):  # uint8 [B, t, H, W, 3] -> logits [B, 2]
        B, t, H, W, _ = keys.shape
        x = F.avg_pool2d(keys.float().div(127.5).sub(1).permute(0, 1, 4, 2, 3).flatten(0, 1), self.cell)
        g, p = H // self.patch, self.patch // self.cell  # tokens per side, cells per token side
        x = x.reshape(B, t, 3, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(B, t, g * g, -1)
        if self.extra == "first":
            x = torch.cat([x, x[:, :1].expand_as(x)], -1)
        elif self.extra == "change":
            x = torch.cat([x, x - torch.cat([x[:, :1], x[:, :-1]], 1)], -1)
        x = x.flatten(1, 2)
        h = torch.cat([self.cls.expand(B, -1, -1), self.embed(x) + self.pos[: x.shape[1]]], 1)
        return self.head(self.body(h)[:, 0])


def accuracy(model, x, y, cams) -> str:
    model.eval()
    with torch.no_grad():
        right = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)]) == y
    model.train()
    per = {c: right[[j for j, k in enumerate(cams) if k == c]].float().mean().item() for c in sorted(set(cams))}
    return f"{right.float().mean().item():.3f} ({', '.join(f'{c} {a:.2f}' for c, a in per.items())})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, nargs="+", required=True, help="shard folders or .safetensors files")
    p.add_argument("--test", type=Path, nargs="+", required=True)
    p.add_argument("--view", choices=("frames", "tokens"), default="frames")
    p.add_argument("--pool", type=int, default=1, help="frames: average-pool the keyframes by this factor")
    p.add_argument("--extra", choices=("", "first", "change"), default="",
                   help="tokens: beside each token, its cells in the first keyframe or their change since the last")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    xtr, ytr, _ = load(a.train)
    xte, yte, cte = load(a.test)
    print(f"train {len(ytr)} questions (dropped end lower {ytr.float().mean():.2f}); test {len(yte)} "
          f"({yte.float().mean():.2f}; answering the majority role: {max(yte.float().mean(), 1 - yte.float().mean()):.3f})")
    t = xtr.shape[1]
    model = Frames(t, a.pool) if a.view == "frames" else Tokens(t, extra=a.extra)
    opt = torch.optim.AdamW(model.parameters(), 1e-3 if a.view == "frames" else 5e-4, weight_decay=0.05)
    start = time.time()
    for epoch in range(a.epochs):
        for b in torch.randperm(len(ytr)).split(64):
            x = xtr[b].clone()
            flip = torch.rand(len(b)) < 0.5
            x[flip] = x[flip].flip(-2)  # mirror left-right
            loss = F.cross_entropy(model(x), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}: held-out accuracy {accuracy(model, xte, yte, cte)}  [{time.time() - start:.0f} s]",
              flush=True)


if __name__ == "__main__":
    main()
