"""The world model's policy mode, open loop: does its next action chunk predict what the expert does next?

Legend: A = 10 arm action dims, Tc given frames.

On held-out expert episodes (seeds heldout_seed(FIRST + i), never trained on), at frames 0, 16, 32, 48 and 64 the
policy (kinema.model.policy.WorldModelPolicy.plan) is given the expert's frames so far (the last Tc = 1 + 4j <= 9)
and the actions between them, and predicts the next 8 actions. Squared error per action group, against the
training mean action's on the same rows, with a 95% bootstrap interval over episodes. Closed loop (`kinema eval
closed-loop --policies MODEL`) compounds these errors; this isolates one chunk.

  python scripts/policy_open_loop.py --model checkpoints/world-model-small --episodes 30

--set calibration --fit FILE fits the policy's affine recalibration (kinema.model.calibration) on chunks of the
calibration seed's expert episodes instead; --calibration FILE scores it beside the raw chunk.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from kinema.eval.actions import GROUPS
from kinema.eval.data import heldout_seed
from kinema.eval.simulator import simulate
from kinema.model.calibration import CALIBRATION_SEED, ActionCalibration
from kinema.model.pipeline import Pipeline
from kinema.model.policy import WorldModelPolicy
from kinema.worlds.generate import episode_seed

STARTS, CHUNK, FIRST = (0, 16, 32, 48, 64), 8, 200


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--episodes", type=int, default=30, help="held-out expert episodes a task")
    ap.add_argument("--tasks", default="push,pick_place,stack")
    ap.add_argument("--draws", type=int, default=16, help="one-step draws the chunk averages (the policy's default)")
    ap.add_argument("--set", choices=("heldout", "calibration"), default="heldout")
    ap.add_argument("--fit", help="write the policy calibration fit on these chunks here")
    ap.add_argument("--calibration", help="score this policy calibration beside the raw chunk")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    pol = WorldModelPolicy(pipe, draws=a.draws)
    e = pipe.config.embodiments[pipe._domain(pol.domain, (), None)]
    mean = np.asarray(e.mean, np.float32)
    cal = ActionCalibration.load(a.calibration) if a.calibration else None
    seed = (lambda i: heldout_seed(FIRST + i)) if a.set == "heldout" else (lambda i: episode_seed(CALIBRATION_SEED, i))
    rng, chunks = np.random.default_rng(0), ([], [])
    for task in a.tasks.split(","):
        groups = {g: slice(*r) for g, r in GROUPS["after"].items()}
        variants = ["raw"] + (["calibrated"] if cal else [])
        err = {(g, v): np.zeros((a.episodes, 2)) for g in groups for v in variants}  # per episode: model, mean
        for i in tqdm(range(a.episodes), desc=task, unit="episode"):
            ep = simulate(task, seed(i), size=64)
            frames = ep.frames[ep.cameras[0]]
            for s in STARTS:
                Tc = 1 + 4 * ((min(s + 1, 9) - 1) // 4)
                pred = pol.plan(frames[s - Tc + 1 : s + 1], ep.action[s - Tc + 1 : s], ep.task, seed=i)[:CHUNK]
                true = ep.action[s : s + CHUNK]
                chunks[0].append(pred), chunks[1].append(true)
                for v in variants:
                    p = pred if v == "raw" else cal.apply(pol.domain, pred)
                    for g, dims in groups.items():
                        err[g, v][i] += [((p[:, dims] - true[:, dims]) ** 2).sum(),
                                         ((mean[dims] - true[:, dims]) ** 2).sum()]
        cells = []
        for (g, v), x in err.items():
            boot = [x[j, 0].sum() / x[j, 1].sum() for j in rng.integers(0, len(x), (1000, len(x)))]
            cells.append(f"{g} {v} {x[:, 0].sum() / x[:, 1].sum():.3f} [{np.quantile(boot, 0.025):.3f}, "
                         f"{np.quantile(boot, 0.975):.3f}]")
        print(f"{task}: " + ", ".join(cells), flush=True)
    if a.fit:
        scale, offset = ActionCalibration.line(np.concatenate(chunks[0]), np.concatenate(chunks[1]))
        ActionCalibration({pol.domain: scale.round(6).tolist()}, {pol.domain: offset.round(6).tolist()}, fit=dict(
            command=f"scripts/policy_open_loop.py --set {a.set} --episodes {a.episodes} --tasks {a.tasks} "
                    f"--draws {a.draws} --fit FILE", seed=CALIBRATION_SEED if a.set == "calibration" else None,
            chunks=len(chunks[0]), model=str(a.model))).save(a.fit)
        print(f"wrote {a.fit}: scale {np.round(scale, 3).tolist()}")


if __name__ == "__main__":
    main()
