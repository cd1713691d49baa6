"""The world model's policy mode, open loop: does its next action chunk predict what the expert does next?

Legend: A = 10 arm action dims, Tc given frames.

On held-out expert episodes (seeds heldout_seed(FIRST + i), never trained on), at frames 0, 16, 32, 48 and 64 the
policy (kinema.model.policy.WorldModelPolicy.plan) is given the expert's frames so far (the last Tc = 1 + 4j <= 9)
and the actions between them, and predicts the next 8 actions. Squared error per action group, against the
training mean action's on the same rows, with a 95% bootstrap interval over episodes. Closed loop (`kinema eval
closed-loop --policies MODEL`) compounds these errors; this isolates one chunk.

  python scripts/policy_open_loop.py --model checkpoints/world-model-small --episodes 30
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from kinema.eval.actions import GROUPS
from kinema.eval.data import heldout_seed
from kinema.eval.simulator import simulate
from kinema.model.pipeline import Pipeline
from kinema.model.policy import WorldModelPolicy

STARTS, CHUNK, FIRST = (0, 16, 32, 48, 64), 8, 200


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--episodes", type=int, default=30, help="held-out expert episodes a task")
    ap.add_argument("--tasks", default="push,pick_place,stack")
    ap.add_argument("--draws", type=int, default=16, help="one-step draws the chunk averages (the policy's default)")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    pol = WorldModelPolicy(pipe, draws=a.draws)
    e = pipe.config.embodiments[pipe._domain(pol.domain, (), None)]
    mean = np.asarray(e.mean, np.float32)
    rng = np.random.default_rng(0)
    for task in a.tasks.split(","):
        groups = {g: slice(*r) for g, r in GROUPS["after"].items()}
        err = {g: np.zeros((a.episodes, 2)) for g in groups}  # per episode: model, mean action
        for i in tqdm(range(a.episodes), desc=task, unit="episode"):
            ep = simulate(task, heldout_seed(FIRST + i), size=64)
            frames = ep.frames[ep.cameras[0]]
            for s in STARTS:
                Tc = 1 + 4 * ((min(s + 1, 9) - 1) // 4)
                pred = pol.plan(frames[s - Tc + 1 : s + 1], ep.action[s - Tc + 1 : s], ep.task, seed=i)[:CHUNK]
                true = ep.action[s : s + CHUNK]
                for g, dims in groups.items():
                    err[g][i] += [((pred[:, dims] - true[:, dims]) ** 2).sum(), ((mean[dims] - true[:, dims]) ** 2).sum()]
        cells = []
        for g, x in err.items():
            boot = [x[j, 0].sum() / x[j, 1].sum() for j in rng.integers(0, len(x), (1000, len(x)))]
            cells.append(f"{g} {x[:, 0].sum() / x[:, 1].sum():.3f} [{np.quantile(boot, 0.025):.3f}, "
                         f"{np.quantile(boot, 0.975):.3f}]")
        print(f"{task}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
