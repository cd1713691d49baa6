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

Does a chunk error that small close the loop? `--save DIR` writes the probe as a checkpoint folder (safetensors +
JSON, kind "policy-probe") and `--closed-loop N` runs it as a `Policy` in the real simulator on the closed-loop
benchmark's N held-out seeds a task (kinema.eval.closed_loop, as `kinema eval closed-loop --policies`): it looks
through the first camera and every 8 frames acts the 8 actions it predicts from the last 9 frames (the first frame
repeated before there are 9, with zero actions between the repeats, as in its training windows) and the actions it
took between them. It reads only which task the instruction names (its first word), not which block:

  python scripts/probe_policy.py --model none --save outputs/probe-policy/probe --closed-loop 10 --out outputs/eval-probe

Behaviour cloning never sees the states its own errors lead to. `--dagger PROBE` is DAgger's first round: PROBE acts
in the simulator (--dagger-episodes a task, seed 6) while the scripted expert, reading the same simulator, labels
every frame with what it would do there; those windows join the expert's (a second round gives both probes,
`--dagger outputs/probe-policy/probe outputs/probe-policy/dagger1`, the second's episodes on seed 7):

  python scripts/probe_policy.py --model none --dagger outputs/probe-policy/probe --dagger-episodes 100 --steps 3000 \
      --save outputs/probe-policy/dagger1 --closed-loop 10 --out outputs/eval-probe-dagger1
A robot knows its own pose: `--state` gives the probe observation.state at the last given frame (one more token;
such a probe acts in the simulator only, so the benchmark replays it inside a world model). `--every N` starts a
training window every N frames, `--replan N` acts N of the 8 predicted actions before looking again, and
`--tokenizer pixels` shows it the frames themselves on the latents' 8x8 grid instead of a tokenizer's code:

  python scripts/probe_policy.py --model none --state --save outputs/probe-policy/probe-state --closed-loop 10 \
      --out outputs/eval-probe-state
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

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
WORDS = ("push", "pick", "stack")  # each task's instruction starts with its word (kinema.worlds.tabletop)
KIND = "policy-probe"
CTX, CHUNK, FIRST = 9, 8, 200  # given frames, actions predicted, scripts/policy_open_loop.py's held-out seeds


def expert_episodes(task_seeds):
    """(task index, frames [T, H, W, 3] of the first camera, actions taken [T-1, A], the actions to learn, text)."""
    for k, w, s in task_seeds:
        ep = rollout(get_world(w), s, size=64)
        yield k, ep.frames[ep.cameras[0]], ep.action, ep.action, ep.task, ep.state


class Labelled:
    """DAgger's rollouts: the probe acts, and the scripted expert, reading the same simulator every frame (it is
    closed loop: it recovers from where the probe leaves the arm), says what it would have done there."""

    privileged = needs_frames = True

    def __init__(self, probe):
        from kinema.eval.policy import ScriptedExpert

        self.probe, self.expert, self.name = probe, ScriptedExpert(), f"dagger-{probe.name}"

    def reset(self, seed: int, instruction: str) -> None:
        self.probe.reset(seed, instruction)
        self.expert.reset(seed, instruction)
        self.labels = []

    def act(self, obs) -> np.ndarray:
        self.labels.append(self.expert.act(obs))
        return self.probe.act(obs)


def dagger_episodes(probe, task_seeds):
    """The probe's own episodes, labelled by the expert (same tuples as expert_episodes)."""
    from kinema.eval.simulator import run_policy

    pol = Labelled(probe)
    for k, w, s in task_seeds:
        ep = run_policy(w, s, pol, size=64)
        yield k, ep.frames[ep.cameras[0]], ep.action, np.stack(pol.labels), ep.task, ep.state


class PixelView:
    """The frames themselves in the latents' place: keyframes 0, 4 and 8 of the 9 (one per latent frame), each 8x8
    pixel cell one position of the same 8x8 grid, so the probe's tokens cover what they cover on the latents and
    only the lossy code is gone. x [B, 3, 9, 64, 64] in [-1, 1] -> [B, 3 * 64, 3, 8, 8]."""

    def encode(self, x):
        B, C, _, H, W = x.shape
        k = x[:, :, 0::4]
        return k.reshape(B, C, 3, H // 8, 8, W // 8, 8).permute(0, 1, 4, 6, 2, 3, 5).reshape(B, C * 64, 3, H // 8, W // 8)


def view_encoder(tokenizer: str):
    return PixelView() if tokenizer == "pixels" else load_tokenizer(tokenizer).eval()


def windows(episodes, total, tokenizer, starts, desc):
    """-> latents [N, C, 3, h, w], history [N, 8, A], target [N, 8, A], task [N], state at the last given frame
    [N, S], raw (frames, history, text) kept for the world model's comparison."""
    lat, hist, tgt, task, state, raw, batch = [], [], [], [], [], [], []

    def flush():
        if batch:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                lat.append(tokenizer.encode(torch.stack(batch)).float())
            batch.clear()

    for k, frames, done, target, text, obs_state in tqdm(episodes, total=total, desc=desc, unit="episode"):
        for st in starts:
            state.append(torch.as_tensor(obs_state[st]))
            clip, h = padded(frames[: st + 1], done[:st])
            batch.append(to_model(clip))
            hist.append(torch.as_tensor(h))
            tgt.append(torch.as_tensor(target[st : st + CHUNK]))
            task.append(k)
            raw.append((clip, h, text))
            if len(batch) == 32:
                flush()
    flush()
    return (torch.cat(lat), torch.stack(hist).float(), torch.stack(tgt).float(), torch.tensor(task),
            torch.stack(state).float(), raw)


def padded(frames: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frames seen so far [t, H, W, 3] and the t - 1 actions between them -> the last CTX frames [CTX, H, W, 3]
    and the CTX - 1 actions between them; before there are CTX the first frame is repeated, with zero actions."""
    miss = CTX - min(len(frames), CTX)
    clip = np.concatenate([np.repeat(frames[:1], miss, 0), frames[len(frames) - CTX + miss :]])
    h = np.zeros((CTX - 1, done.shape[1]), np.float32)
    if CTX - 1 - miss:
        h[miss:] = done[len(done) - (CTX - 1 - miss) :]
    return clip, h


class Probe(nn.Module):
    def __init__(self, C: int, tokens: int, A: int = 10, D: int = 128, depth: int = 4, state: int = 0):
        super().__init__()
        self.lat_in, self.act_in = nn.Linear(4 * C, D), nn.Linear(A, D)  # 2x2 latent patches a token
        self.state_in = nn.Linear(state, D) if state else None  # proprioception: observation.state, one token
        self.pos = nn.Parameter(torch.randn(1, 1 + tokens // 4 + CTX - 1 + bool(state), D) * 0.02)
        self.task = nn.Embedding(len(TASKS), D)
        layer = nn.TransformerEncoderLayer(D, 4, 4 * D, dropout=0.0, batch_first=True, norm_first=True)
        self.body = nn.TransformerEncoder(layer, depth)
        self.out = nn.Linear(D, CHUNK * A)

    def forward(self, z, hist, task, state=None):  # z [B, C, t, h, w], hist [B, 8, A], task [B], state [B, S] -> [B, 8, A]
        B, C, t, h, w = z.shape
        patches = z.view(B, C, t, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, -1, 4 * C)
        parts = [self.task(task)[:, None], self.lat_in(patches), self.act_in(hist)]
        if self.state_in is not None:
            parts.append(self.state_in(state)[:, None])
        x = torch.cat(parts, 1)
        return self.out(self.body(x + self.pos)[:, 0]).view(len(z), CHUNK, -1)


class ProbePolicy:
    """The probe acting in closed loop (kinema.eval.policy's interface): every CHUNK frames it encodes the last CTX
    frames of the first camera and acts the CHUNK actions it predicts."""

    privileged = False
    needs_frames = True

    def __init__(self, path: Path, replan: int = CHUNK):
        from kinema.train.checkpoint import load_pretrained

        if not 1 <= replan <= CHUNK:
            raise ValueError(f"replan: expected 1..{CHUNK} actions acted between looks, got {replan}")
        cfg, state = load_pretrained(path, expected_kind=KIND)
        m = cfg["model"]
        self.replan = replan
        self.probe = Probe(m["channels"], m["tokens"], state=m.get("state", 0)).eval()
        # observation.state exists in the simulator only: inside a world model such a probe is replayed, as the
        # privileged policies are
        self.privileged = self.probe.state_in is not None
        self.probe.load_state_dict({k: v for k, v in state.items() if not k.startswith("norm.")})
        self.stats = {k[5:]: v for k, v in state.items() if k.startswith("norm.")}
        self.tokenizer = view_encoder(m["tokenizer"])
        digest = hashlib.sha1((Path(path) / "model.safetensors").read_bytes()).hexdigest()[:8]
        self.name = f"{Path(path).name}@{digest}" + (f"-replan{replan}" if replan != CHUNK else "")
        self.reset(0, "")

    def reset(self, seed: int, instruction: str) -> None:
        self._seen, self._done, self._queue = [], [], []

    def act(self, obs) -> np.ndarray:
        if not obs.frames:
            raise ValueError(f"policy {self.name!r} looks at a camera: the observation carries no frames")
        self._seen.append(next(iter(obs.frames.values())))
        if not self._queue:
            word = obs.instruction.split()[0] if obs.instruction.split() else ""
            if word not in WORDS:
                raise ValueError(f"policy {self.name!r}: expected an instruction starting with one of "
                                 f"{', '.join(WORDS)}, got {obs.instruction!r}")
            A = self.probe.act_in.in_features
            clip, h = padded(np.stack(self._seen), np.array(self._done, np.float32).reshape(-1, A))
            s = self.stats
            with torch.no_grad():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    z = self.tokenizer.encode(to_model(clip)[None]).float()
                st = None
                if self.probe.state_in is not None:
                    if obs.state is None:
                        raise ValueError(f"policy {self.name!r} reads observation.state: the observation has none")
                    st = (torch.as_tensor(obs.state, dtype=torch.float32)[None] - s["smu"]) / s["ssd"]
                y = self.probe((z - s["zmu"]) / s["zsd"], (torch.as_tensor(h)[None] - s["mu"]) / s["sd"],
                               torch.tensor([WORDS.index(word)]), st)
            self._queue = list((y[0] * s["sd"] + s["mu"]).numpy())[: self.replan]
        a = np.asarray(self._queue.pop(0), np.float32)
        self._done.append(a)
        return a


def ratios(pred, true, mean) -> dict:
    return {g: float(((pred[..., a:b] - true[..., a:b]) ** 2).sum() / ((mean[a:b] - true[..., a:b]) ** 2).sum())
            for g, (a, b) in GROUPS["after"].items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default="checkpoints/tokenizer-cv4x8x8",
                    help="what the probe sees: a tokenizer's latents, or 'pixels' (the frames on the same 8x8 grid)")
    ap.add_argument("--model", default="checkpoints/world-model-small", help="the world model compared (none: skip)")
    ap.add_argument("--extra", type=int, default=0, help="more expert episodes a task (seed 5)")
    ap.add_argument("--heldout", type=int, default=30, help="held-out episodes a task")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--save", help="write the probe here as a checkpoint folder (kind policy-probe)")
    ap.add_argument("--closed-loop", type=int, default=0, metavar="N",
                    help="then run it in closed loop in the real simulator, N held-out seeds a task (needs --save)")
    ap.add_argument("--out", default="outputs/eval-probe", help="the closed-loop benchmark's output folder")
    ap.add_argument("--dagger", metavar="PROBE", nargs="+", default=[],
                    help="saved probes (--save) whose own episodes, labelled by the expert, join the training windows "
                         "(DAgger: round r + 1 gives the probes of rounds 0..r)")
    ap.add_argument("--dagger-episodes", type=int, default=100, help="with --dagger: its episodes a task (seed 6)")
    ap.add_argument("--state", action="store_true",
                    help="give the probe proprioception too: observation.state at the last given frame, one token")
    ap.add_argument("--every", type=int, default=8, help="a training window starts every this many frames")
    ap.add_argument("--replan", type=int, default=CHUNK,
                    help="in closed loop, act this many of the 8 predicted actions before looking again")
    a = ap.parse_args(argv)
    if a.closed_loop and not a.save:
        ap.error("--closed-loop runs the saved probe: give --save DIR")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    t0 = time.time()
    tok = view_encoder(a.tokenizer)
    train = [(k, w, episode_seed(s, i)) for k, w in enumerate(TASKS) for s, n in ((0, 16), (2, 120), (5, a.extra))
             for i in range(n)]
    held = [(k, w, heldout_seed(FIRST + i)) for k, w in enumerate(TASKS) for i in range(a.heldout)]
    starts = range(0, 97 - CHUNK, a.every)
    Z, H, Y, K, S, _ = windows(expert_episodes(train), len(train), tok, starts, "training windows")
    for r, path in enumerate(a.dagger):  # and the episodes of saved probes acting, labelled by the expert (seed 6 + r)
        runs = [(k, w, episode_seed(6 + r, i)) for k, w in enumerate(TASKS) for i in range(a.dagger_episodes)]
        more = windows(dagger_episodes(ProbePolicy(Path(path)), runs), len(runs), tok, starts, f"DAgger windows {r}")
        Z, H, Y, K, S = (torch.cat([x, y]) for x, y in zip((Z, H, Y, K, S), more[:5]))
        train += runs
    Zh, Hh, Yh, Kh, Sh, raw = windows(expert_episodes(held), len(held), tok, (16, 32, 48, 64), "held-out windows")
    mu, sd = Y.reshape(-1, 10).mean(0), Y.reshape(-1, 10).std(0).clamp_min(1e-3)
    zmu, zsd = Z.mean((0, 2, 3, 4), keepdim=True), Z.std((0, 2, 3, 4), keepdim=True)
    smu, ssd = S.mean(0), S.std(0).clamp_min(1e-3)
    n_state = S.shape[1] if a.state else 0
    norm = lambda z, h, st: ((z - zmu) / zsd, (h - mu) / sd, (st - smu) / ssd if n_state else None)  # noqa: E731
    probe = Probe(Z.shape[1], Z[0, 0].numel(), state=n_state)
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-4, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-4, total_steps=a.steps, pct_start=0.05)
    for step in tqdm(range(a.steps), desc="probe", unit="step"):
        i = torch.randint(0, len(Z), (a.batch,))
        z, h, st = norm(Z[i], H[i], S[i])
        loss = ((probe(z, h, K[i], st) - (Y[i] - mu) / sd) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    probe.eval()
    with torch.no_grad():
        pred = []
        for j in range(0, len(Zh), 256):
            z, h, st = norm(Zh[j : j + 256], Hh[j : j + 256], Sh[j : j + 256])
            pred.append(probe(z, h, Kh[j : j + 256], st))
        pred = torch.cat(pred) * sd + mu
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
    if a.save:
        from kinema.train.checkpoint import save_pretrained

        norm_state = {"norm.mu": mu, "norm.sd": sd, "norm.zmu": zmu, "norm.zsd": zsd, "norm.smu": smu, "norm.ssd": ssd}
        save_pretrained(a.save, {**probe.state_dict(), **norm_state}, dict(kind=KIND, model=dict(
            channels=Z.shape[1], tokens=Z[0, 0].numel(), tokenizer=a.tokenizer, state=n_state)))
        print(f"probe -> {a.save}")
    if a.closed_loop:
        from kinema.eval import closed_loop
        from kinema.eval.policy import register_policy_loader
        from kinema.eval.simulator import SimulatorOracle

        register_policy_loader(KIND, lambda path, **_: ProbePolicy(path, replan=a.replan))
        summary = closed_loop.run(SimulatorOracle(), a.out, n=a.closed_loop, policies=[a.save], chunk=CHUNK)
        print(closed_loop.table(summary))


if __name__ == "__main__":
    main()
