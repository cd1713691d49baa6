"""Refit one embodiment's slot of the world model's action head on its own features over many more episodes.

Legend: M feature rows (noisy action tokens), D model width, A action dims (camera 9, single arm 10).

The last layer that makes an action is `action_out`, a Linear per embodiment slot. This keeps the whole network
and refits one slot by ridge regression of the rectified-flow target (noise - x0, the normalised actions) on the
final hidden states of that embodiment's noisy action tokens, at noise levels drawn as in training, over the
episodes the world model trained on and `--extra` new ones (seed 5); the ridge weight is chosen on a tenth of the
episodes held back. Every other tensor of the checkpoint is copied unchanged.

- camera: camera inverse dynamics is the only mode that generates camera actions, so the slot is fit on it: the
  first 33 frames of each path (the 528 paths the world model saw, then the new ones). A probe from scratch on
  the same latents shows the paths, not the latents, were the limit (scripts/probe_camera_pose.py).
- single_arm: two modes generate arm actions, inverse dynamics and the policy, so the slot is fit on both: the
  three 33-frame clips of every tabletop episode (push, pick_place, stack; expert and random arms as the world
  model trained on them, then new expert ones) read by inverse dynamics, and the expert clips acted by the policy
  from 1 or 3 given latent frames as in training. Only the expert's clips teach the policy: the training mixture
  also drew the policy mode on the random arm's clips, whose actions are no one's intent.

  python scripts/refit_action_head.py --embodiment camera --extra 4000 --out outputs/camera-head/world-model-small  # 20 min
  python scripts/refit_action_head.py --embodiment single_arm --extra 400 --out outputs/arm-head/world-model-small
  cp OUT/model.safetensors checkpoints/world-model-small/   # once it measures better (BENCHMARKS.md)
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
from kinema.model.modes import plan_tokens  # noqa: E402
from kinema.model.pipeline import Pipeline  # noqa: E402
from kinema.model.sequence import ACTION, collate, keyframes  # noqa: E402
from kinema.model.train import schedule_for  # noqa: E402
from kinema.train.checkpoint import load_tensors, save_tensors  # noqa: E402
from kinema.worlds.generate import episode_seed  # noqa: E402
from kinema.worlds.registry import get_world  # noqa: E402
from kinema.worlds.rollout import rollout  # noqa: E402

CLIP = 33
LAMBDAS = (1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
TASKS = ("push", "pick_place", "stack")


def episodes(embodiment: str, extra: int):
    """-> [(scenario, seed, policy)]: the world model's own training episodes, then `extra` new ones (seed 5; for
    the arm, `extra` expert episodes a task). recipes/tokenizer_data.sh and recipes/world_model_data.sh."""
    if embodiment == "camera":
        return [("camera_motion", episode_seed(s, i), "expert") for s, n in ((0, 48), (2, 480), (5, extra))
                for i in range(n)]
    return [(w, episode_seed(s, i), policy) for w in TASKS
            for s, n, policy in ((0, 16, "expert"), (2, 120, "expert"), (3, 48, "random"), (5, extra, "expert"))
            for i in range(n)]


class Features:
    """Hidden states of one slot's noisy action tokens and their flow targets, gathered clip by clip."""

    def __init__(self, pipe: Pipeline, slot: int, seed: int):
        self.pipe, self.slot, self.dim = pipe, slot, pipe.config.embodiments[slot].dim
        self.schedule = schedule_for(pipe.config)
        self.g = torch.Generator().manual_seed(seed)
        self.H, self.Y, self.P, self._seen = [], [], [], []
        self._hook = pipe.model.action_out.register_forward_hook(lambda m, inp, out: self._seen.append(inp[0].float()))

    def close(self):
        self._hook.remove()

    def add(self, tok, draws: int, group: int):
        """Noise tok's noisy tokens `draws` times (one level each, drawn as in training) and keep the action rows."""
        cache = self.pipe._context(tok, [])
        noisy = collate([tok.select(tok.gen)])
        x0 = noisy.value  # the noisy tokens' values hold the truth here (the true actions, and frames if any)
        width = int(noisy.dims.max())  # noise drawn no wider than the widest value, then padded, as at sampling
        real = (torch.arange(x0.shape[-1]) < noisy.dims[..., None]).float()
        act = noisy.kind[0] == ACTION  # the action rows among the noisy tokens, in order: the head's inputs
        for _ in range(draws):
            t = self.schedule.sample_training_t(1, generator=self.g)
            noise = torch.nn.functional.pad(torch.randn(*x0.shape[:-1], width, generator=self.g),
                                            (0, x0.shape[-1] - width)) * real
            value = self.schedule.add_noise(x0, noise, t.view(1, 1, 1))
            self._seen.clear()
            with torch.no_grad(), self.pipe._autocast():
                self.pipe.model(replace(noisy, value=value),
                                self.schedule.noise_level(t).expand(value.shape[:2]).float(), cache=cache)
            self.H.append(self._seen[-1])
            self.Y.append((noise - x0)[0, act, : self.dim])
            self.P.append(torch.full((len(self._seen[-1]),), group))

    def arrays(self):
        return torch.cat(self.H).double(), torch.cat(self.Y).double(), torch.cat(self.P)


def policy_tokens(pipe: Pipeline, clip, actions, slot: int, prompt: str, fps: float, k: int):
    """The policy task of a whole clip, as training builds it: every latent frame encoded (the future ones are the
    generated frames' truth), the first k given."""
    c, e = pipe.config, pipe.config.embodiments[slot]
    a = (torch.as_tensor(actions[:CLIP]) - torch.tensor(e.mean)) / torch.tensor(e.std)
    keys = torch.from_numpy(np.ascontiguousarray(keyframes(clip, c.temporal_compression, c.tokenizer_window))) \
        if c.pixel_cell else None
    streams = dict(vision=pipe.encode_frames(clip), fps=fps, audio=None, actions=a, domain=slot, keys=keys)
    return plan_tokens(c, "policy", streams, text=pipe.text.encode(prompt, bos=True) if prompt else [], k=k)


def gather(pipe: Pipeline, embodiment: str, eps, draws: int, seed: int) -> Features:
    slot = emb.index(pipe.config.embodiments, embodiment)
    f = Features(pipe, slot, seed)
    rng = np.random.default_rng(seed)
    try:
        for j, (scenario, s, policy) in enumerate(tqdm(eps, desc=f"{embodiment} episodes", unit="episode")):
            ep = rollout(get_world(scenario), s, size=64, policy=policy)
            starts = [0] if embodiment == "camera" else range(0, ep.length - CLIP + 1, CLIP - 1)
            for n, start in enumerate(starts):
                cam = ep.cameras[(j + n) % len(ep.cameras)] if embodiment != "camera" else ep.cameras[0]
                clip, acts = ep.frames[cam][start : start + CLIP], ep.action[start : start + CLIP]
                p = pipe._plan("inverse_dynamics", num_frames=CLIP, context=clip, actions=acts, domain_name=embodiment,
                               fps=ep.fps, prompt=ep.task)
                f.add(p.tok, draws, j)
                if embodiment != "camera" and policy == "expert":
                    k = 1 if rng.random() < 0.5 else 3  # as the training sampler mostly draws it
                    f.add(policy_tokens(pipe, clip, acts, slot, ep.task, ep.fps, k), 1, j)
    finally:
        f.close()
    return f


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
    ap.add_argument("--embodiment", choices=("camera", "single_arm"), required=True)
    ap.add_argument("--extra", type=int, default=4000,
                    help="new training episodes (seed 5): camera paths, or expert episodes a tabletop task")
    ap.add_argument("--draws", type=int, default=2, help="noise levels drawn per clip for inverse dynamics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the new checkpoint folder")
    a = ap.parse_args(argv)
    if Path(a.out).resolve() == Path(a.model).resolve():
        raise SystemExit("--out: a new folder, not --model itself (the refit is measured before it replaces anything)")
    torch.set_num_threads(2)
    t0 = time.time()
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    if pipe.config.schedule != "rectified_flow":
        raise SystemExit(f"--model: the refit regresses the rectified-flow target; this model uses {pipe.config.schedule}")
    slot = emb.index(pipe.config.embodiments, a.embodiment)
    dim = pipe.config.embodiments[slot].dim
    eps = episodes(a.embodiment, a.extra)
    H, Y, P = gather(pipe, a.embodiment, eps, a.draws, a.seed).arrays()
    val = P % 10 == 9  # a tenth of the episodes, whole, held back to choose the ridge weight
    W0 = pipe.model.action_out.weight[slot, :, :dim].double().detach()
    b0 = pipe.model.action_out.bias[slot, :dim].double().detach()
    mse = lambda W, b, m: float(((H[m] @ W + b - Y[m]) ** 2).mean())  # noqa: E731
    print(f"{len(eps)} episodes, {len(H)} action tokens; flow-target MSE on the held-back episodes: shipped head "
          f"{mse(W0, b0, val):.4f}")
    fits = {lam: ridge(H[~val], Y[~val], lam) for lam in LAMBDAS}
    for lam, (W, b) in fits.items():
        print(f"  ridge {lam:g}: {mse(W, b, val):.4f}")
    lam = min(fits, key=lambda k: mse(*fits[k], val))
    W, b = ridge(H, Y, lam)  # the chosen weight, refit on every episode
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(a.model, out)
    tensors = load_tensors(out / "model.safetensors")
    w, bias = tensors["action_out.weight"].clone(), tensors["action_out.bias"].clone()
    w[slot, :, :dim], bias[slot, :dim] = W.to(w.dtype), b.to(bias.dtype)
    tensors["action_out.weight"], tensors["action_out.bias"] = w, bias
    save_tensors(out / "model.safetensors", tensors)
    print(f"ridge {lam:g} on every episode -> {out} (only action_out's {a.embodiment} slot changed), "
          f"{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
