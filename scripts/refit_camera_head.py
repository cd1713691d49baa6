"""Refit the world model's camera action head on its own features over many more camera paths.

Legend: M feature rows (action tokens), D model width, A = 9 camera pose numbers, R = 32 pose rows a clip.

Camera inverse dynamics is level with the mean action on held-out paths, and a probe trained from scratch on the
same latents goes from that level to a quarter of the mean action's error when it sees 4,528 training paths
instead of the world model's 528 (scripts/probe_camera_pose.py; BENCHMARKS.md). The last layer that makes a camera
action is `action_out`'s camera slot (a Linear per embodiment). Nothing but camera inverse dynamics reads it: the
camera's actions are given, not generated, in every other mode it trains, and the arm has its own slot. So this
keeps the whole network and refits that one Linear by ridge regression of the flow target (noise - x0, the
normalised poses) on the final hidden states of the camera's noisy action tokens, at noise levels drawn as in
training, over the world model's paths and --extra-paths new ones (seed 5); the ridge weight is chosen on a tenth
of the paths held back. Every other tensor of the checkpoint is copied unchanged.

  python scripts/refit_camera_head.py --extra-paths 4000 --out outputs/camera-head/world-model-small   # 20 min
  cp outputs/camera-head/world-model-small/model.safetensors checkpoints/world-model-small/   # once it measures better
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.model import embodiments as emb  # noqa: E402
from kinema.model.pipeline import Pipeline  # noqa: E402
from kinema.model.sequence import collate  # noqa: E402
from kinema.model.train import schedule_for  # noqa: E402
from kinema.train.checkpoint import load_tensors, save_tensors  # noqa: E402
from kinema.worlds.generate import episode_seed  # noqa: E402
from kinema.worlds.registry import get_world  # noqa: E402
from kinema.worlds.rollout import rollout  # noqa: E402

CLIP = 33
LAMBDAS = (1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


def features(pipe: Pipeline, seeds, draws: int, seed: int):
    """-> hidden states [M, D], flow targets [M, A], path index [M]: `draws` noise levels a path."""
    slot = emb.index(pipe.config.embodiments, "camera")
    dim = pipe.config.embodiments[slot].dim
    schedule = schedule_for(pipe.config)
    seen = []
    hook = pipe.model.action_out.register_forward_hook(lambda m, inp, out: seen.append(inp[0].float()))
    g = torch.Generator().manual_seed(seed)
    H, Y, P = [], [], []
    world = get_world("camera_motion")
    try:
        for j, s in enumerate(tqdm(seeds, desc="camera paths", unit="path")):
            ep = rollout(world, s, size=64)
            p = pipe._plan("inverse_dynamics", num_frames=CLIP, context=ep.frames[ep.cameras[0]][:CLIP],
                           actions=ep.action[:CLIP], domain_name="camera", fps=ep.fps, prompt=ep.task)
            cache = pipe._context(p.tok, [])
            noisy = collate([p.tok.select(p.tok.gen)])
            x0 = noisy.value[..., :dim]  # the normalised poses: the noisy tokens' values hold the truth here
            for _ in range(draws):
                t = schedule.sample_training_t(1, generator=g)
                noise = torch.randn(x0.shape, generator=g)
                value = noisy.value.clone()
                value[..., :dim] = schedule.add_noise(x0, noise, t.view(1, 1, 1))
                seen.clear()
                with torch.no_grad(), pipe._autocast():
                    pipe.model(replace(noisy, value=value), schedule.noise_level(t).expand(value.shape[:2]).float(),
                               cache=cache)
                H.append(seen[-1])
                Y.append((noise - x0)[0])
                P.append(torch.full((len(seen[-1]),), j))
    finally:
        hook.remove()
    return torch.cat(H).double(), torch.cat(Y).double(), torch.cat(P)


def ridge(H, Y, lam: float):
    """min |[H 1] W - Y|^2 + lam |W without the bias row|^2 -> (W [D, A], b [A])."""
    X = torch.cat([H, torch.ones(len(H), 1, dtype=H.dtype)], 1)
    reg = torch.eye(X.shape[1], dtype=H.dtype) * lam
    reg[-1, -1] = 0
    W = torch.linalg.solve(X.T @ X + reg, X.T @ Y)
    return W[:-1], W[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--extra-paths", type=int, default=4000, help="new training paths (seed 5) beside the 528")
    ap.add_argument("--draws", type=int, default=2, help="noise levels drawn per path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the new checkpoint folder")
    a = ap.parse_args(argv)
    if Path(a.out).resolve() == Path(a.model).resolve():
        raise SystemExit("--out: a new folder, not --model itself (the refit is measured before it replaces anything)")
    torch.set_num_threads(2)
    t0 = time.time()
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    slot = emb.index(pipe.config.embodiments, "camera")
    dim = pipe.config.embodiments[slot].dim
    seeds = ([episode_seed(0, i) for i in range(48)] + [episode_seed(2, i) for i in range(480)]
             + [episode_seed(5, i) for i in range(a.extra_paths)])
    H, Y, P = features(pipe, seeds, a.draws, a.seed)
    val = P % 10 == 9  # a tenth of the paths, whole, held back to choose the ridge weight
    W0 = pipe.model.action_out.weight[slot, :, :dim].double().detach()
    b0 = pipe.model.action_out.bias[slot, :dim].double().detach()
    mse = lambda W, b, m: float(((H[m] @ W + b - Y[m]) ** 2).mean())  # noqa: E731
    print(f"{len(seeds)} paths, {len(H)} action tokens; flow-target MSE on the held-back paths: shipped head "
          f"{mse(W0, b0, val):.4f}")
    fits = {lam: ridge(H[~val], Y[~val], lam) for lam in LAMBDAS}
    for lam, (W, b) in fits.items():
        print(f"  ridge {lam:g}: {mse(W, b, val):.4f}")
    lam = min(fits, key=lambda k: mse(*fits[k], val))
    W, b = ridge(H, Y, lam)  # the chosen weight, refit on every path
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(a.model, out)
    tensors = load_tensors(out / "model.safetensors")
    w, bias = tensors["action_out.weight"].clone(), tensors["action_out.bias"].clone()
    w[slot, :, :dim], bias[slot, :dim] = W.to(w.dtype), b.to(bias.dtype)
    tensors["action_out.weight"], tensors["action_out.bias"] = w, bias
    save_tensors(out / "model.safetensors", tensors)
    print(f"ridge {lam:g} on every path -> {out} (only action_out's camera slot changed), {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
