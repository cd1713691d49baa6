"""Can an object's colour be read off the one vision token that covers it? A probe of the reasoner's input.

Legend: N objects, F features.

For every camera of every episode, the first frame (the tokenizer encodes it alone: it is the video's first
latent frame) and each movable object with at least MIN_PIXELS pixels in the ground-truth id mask: the 16x16-pixel
cell holding most of them is the world model's vision token there (a 2x2 patch of the 8x8 latent grid). Two
features of that cell, each classified into the object's palette colour by a linear and a small MLP probe trained
on one set of episodes and scored on another:

  latent   the token's 2x2x16 tokenizer latents (standardised as the world model reads them)   F = 64
  near     the same with one latent position around it (4x4x16): what a decoder layer sees       F = 256
  pixels   the cell's 16x16x3 pixels                                                              F = 768
  pooled   the same pixels averaged to 4x4 (about as many numbers as the latent token)           F = 48
With --cell 8 the cell is one latent position (a 1x1 patch: 4x the vision tokens), F = 16 / 144 / 192 / 48.

  python scripts/probe_colour.py --train outputs/data/reason --test outputs/data/heldout-reason
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

MIN_PIXELS = 12
COMPRESSION = 8  # the tokenizer's spatial compression: pixels per latent position




@torch.no_grad()
def objects_in_cells(roots, tokenizer, mean, std, cell: int = 16):
    """-> latent [N, C·(cell/8)²], the latents one position around it too [N, C·(cell/8 + 2)²], pixels [N, cell²·3],
    colour names [N] over every dataset under roots
    (cell 16: the world model's 2x2 patch; cell 8: one latent position, a 1x1 patch)."""
    from kinema.data.reader import EpisodeStore
    from kinema.tokenize.data import to_model

    lat, near, pix, names = [], [], [], []
    for root in roots:
        store = EpisodeStore(root)
        for i in range(len(store)):
            a = store.read(i, audio=False)
            movable = [o for o in json.loads(store.meta[i]["kinema/objects"]) if o["kind"] in ("dynamic", "articulated")]
            for cam in store.cameras:
                frame, mask = a[f"frames/{cam}"][:1], a[f"masks/{cam}"][0]  # [1, H, W, 3], [H, W]
                z = tokenizer.encode(to_model(frame)[None].float()).float()[0, :, 0]  # [C, h, w]
                z = (z - mean) / std
                zp = nn.functional.pad(z, (1, 1, 1, 1))  # zero latents around the frame, for the neighbourhood
                for o in movable:
                    m = mask == o["id"]
                    if m.sum() < MIN_PIXELS:
                        continue
                    counts = m.reshape(m.shape[0] // cell, cell, m.shape[1] // cell, cell).sum((1, 3))
                    r, c = np.unravel_index(counts.argmax(), counts.shape)
                    k = cell // COMPRESSION
                    lat.append(z[:, k * r : k * (r + 1), k * c : k * (c + 1)].reshape(-1))
                    near.append(zp[:, k * r : k * (r + 1) + 2, k * c : k * (c + 1) + 2].reshape(-1))
                    pix.append(torch.from_numpy(frame[0, cell * r : cell * (r + 1), cell * c : cell * (c + 1)].astype(np.float32)
                                                / 255).reshape(-1))
                    names.append(o["colour"])
    return torch.stack(lat), torch.stack(near), torch.stack(pix), names


def fit_and_score(x_train, y_train, x_test, y_test, hidden: int, steps: int = 1500, seed: int = 0) -> float:
    torch.manual_seed(seed)
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    k = int(max(y_train.max(), y_test.max())) + 1
    net = nn.Linear(x_train.shape[1], k) if not hidden else nn.Sequential(
        nn.Linear(x_train.shape[1], hidden), nn.GELU(), nn.Linear(hidden, k))
    opt = torch.optim.AdamW(net.parameters(), 3e-3, weight_decay=1e-2)
    xt = (x_train - mu) / sd
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(xt), y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net((x_test - mu) / sd).argmax(1) == y_test).float().mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=Path, default=Path("outputs/data/reason"))
    p.add_argument("--test", type=Path, default=Path("outputs/data/heldout-reason"))
    p.add_argument("--model", type=Path, default=Path("checkpoints/world-model-small"))
    p.add_argument("--tokenizer", type=Path, default=Path("checkpoints/tokenizer-cv4x8x8"))
    p.add_argument("--cell", type=int, default=16, choices=(8, 16), help="pixels per token side: 16 = 2x2 patches")
    args = p.parse_args(argv)
    from kinema.tokenize.load import load_tokenizer

    from kinema.tokenize.video import KIND

    tok = load_tokenizer(args.tokenizer, KIND)
    cfg = json.loads((args.model / "config.json").read_text())["model"]
    mean = torch.tensor(cfg["latent_mean"]).view(-1, 1, 1)
    std = torch.tensor(cfg["latent_std"]).view(-1, 1, 1)
    roots = {k: sorted(d for d in path.iterdir() if d.is_dir()) for k, path in (("train", args.train), ("test", args.test))}
    (lat_tr, near_tr, pix_tr, c_tr), (lat_te, near_te, pix_te, c_te) = (objects_in_cells(roots[k], tok, mean, std, args.cell)
                                                      for k in ("train", "test"))
    colours = sorted(set(c_tr) | set(c_te))
    y_tr, y_te = (torch.tensor([colours.index(c) for c in cs]) for cs in (c_tr, c_te))
    chance = max(np.mean([c == k for c in c_te]) for k in colours)
    print(f"{len(y_tr)} objects to train on, {len(y_te)} to test ({len(colours)} colours; most common colour {chance:.3f})")
    print("| feature | linear | MLP (256) |\n|---|---|---|")
    b = args.cell // 4

    def pool(x):  # [N, cell*cell*3] -> [N, 4*4*3]
        return x.view(-1, 4, b, 4, b, 3).mean((2, 4)).reshape(len(x), -1)

    for name, xtr, xte in ((f"latent token ({lat_tr.shape[1]})", lat_tr, lat_te),
                           (f"latents with one position around ({near_tr.shape[1]})", near_tr, near_te), (f"pixel cell ({pix_tr.shape[1]})", pix_tr, pix_te),
                           ("pixel cell pooled to 4x4 (48)", pool(pix_tr), pool(pix_te))):
        print(f"| {name} | {fit_and_score(xtr, y_tr, xte, y_te, 0):.3f} | {fit_and_score(xtr, y_tr, xte, y_te, 256):.3f} |")


if __name__ == "__main__":
    main()
