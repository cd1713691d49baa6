"""Generate a dataset of episodes from one world: resumable, parallel, deterministic.

A run first simulates every planned episode into `OUT/.staging/` (one file per
episode, each written atomically), then packs them into the LeRobot v3.0
layout and writes `meta/info.json` last. Killed at any point, the same command
picks up where it stopped: finished episodes are kept, none is duplicated, and
a reader never sees a half-written dataset (no info.json until it is whole).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kinema.data.episode import Episode
from kinema.worlds.registry import get_world
from kinema.worlds.tabletop import parse_policy

PLAN_FILE = "plan.json"


def episode_seed(seed: int, index: int) -> int:
    """Independent, reproducible seed for episode `index` of a run seeded with `seed`."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def make_plan(scenario, episodes, seed, size, fps, frames, twins, policy) -> dict:
    world = get_world(scenario)
    items = []
    for i in range(episodes):
        s = episode_seed(seed, i)
        items.append(dict(seed=s, violation=None, twin_of=None))
        if twins:
            items.append(dict(seed=s, violation="random", twin_of=len(items) - 1))
    return dict(scenario=scenario, episodes=episodes, seed=seed, size=size, fps=float(fps or world.fps),
                frames=int(frames or world.frames), twins=twins, policy=policy, items=items)


def _check_args(scenario, episodes, size, out):
    get_world(scenario)  # raises with the list of known scenarios
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if size < 16 or size % 2:
        raise ValueError(f"--size must be an even number of pixels >= 16, got {size}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write to output directory {out}: {e.strerror or e}") from e


def simulate_item(item: dict, plan: dict) -> Episode:
    """One planned episode (an item of make_plan's plan)."""
    from kinema.worlds.rollout import rollout  # imported here: spawn workers start clean

    ep = rollout(get_world(plan["scenario"]), item["seed"], size=plan["size"], fps=plan["fps"],
                 frames=plan["frames"], policy=plan["policy"], violation=item["violation"])
    ep.info["twin_of"] = item["twin_of"]
    return ep


def _simulate(job) -> str:
    """Worker: simulate one planned episode into its staging file."""
    index, item, plan, path = job
    simulate_item(item, plan).save(path)
    return path


def generate(scenario: str, episodes: int, seed: int, out, *, size: int = 64, fps: float | None = None,
             frames: int | None = None, workers: int = 1, twins: bool = False, policy: str = "expert",
             episodes_per_file: int = 100, progress: bool = True) -> Path:
    """Simulate `episodes` episodes (twice that with twins) of `scenario` into a LeRobot dataset at `out`."""
    from kinema.data.lerobot import write_dataset

    parse_policy(policy)  # a bad policy fails before anything is written or simulated
    _check_args(scenario, episodes, size, out)
    out = Path(out)
    plan = make_plan(scenario, episodes, seed, size, fps, frames, twins, policy)
    staging = out / ".staging"
    info_path = out / "meta" / "info.json"
    if info_path.exists():
        done = json.loads(info_path.read_text()).get("kinema", {}).get("plan")
        if done == {k: v for k, v in plan.items() if k != "items"}:
            return out  # already complete
        raise ValueError(f"{out} already holds a finished dataset made with other settings; choose another --out")
    staging.mkdir(parents=True, exist_ok=True)
    plan_path = staging / PLAN_FILE
    if plan_path.exists():
        old = json.loads(plan_path.read_text())
        if old != plan:
            raise ValueError(f"{out} holds an unfinished run with other settings ({plan_path}); "
                             "rerun that command to finish it, or choose another --out")
    else:
        tmp = plan_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan, indent=1))
        os.replace(tmp, plan_path)

    paths = [str(staging / f"episode-{i:06d}.npz") for i in range(len(plan["items"]))]
    for p in staging.glob("*.tmp"):  # leftovers of a killed writer
        p.unlink()
    todo = [(i, it, plan, paths[i]) for i, it in enumerate(plan["items"]) if not os.path.exists(paths[i])]
    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc=f"simulate {scenario}", unit="ep",
               disable=not progress)
    if workers > 1 and len(todo) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_simulate, todo):
                bar.update()
    else:
        for job in todo:
            _simulate(job)
            bar.update()
    bar.close()

    def episodes_iter():
        for p in paths:
            yield Episode.load(p)

    write_dataset(out, episodes_iter(), episodes_per_file=episodes_per_file, progress=progress,
                  extra_info={"plan": {k: v for k, v in plan.items() if k != "items"}})
    shutil.rmtree(staging)
    return out
