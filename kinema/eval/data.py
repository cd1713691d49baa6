"""Evaluation episodes: held-out seeds, simulated on demand, cached on disk.

Every benchmark draws its episodes from EVAL_SEED: episode i of a scenario has
seed `episode_seed(EVAL_SEED, i)`, a 32-bit hash that no training run seeded
with a small number (`kinema worlds generate --seed 0`, ...) produces except by
a chance collision (about n_train * n_eval / 2^32, under 1e-4 for thousands of
episodes each). An episode is simulated the first time it is asked for and
saved under `<out>/cache/`, one atomic file each, so a benchmark run that is
stopped and started again, or a second predictor on the same data, reuses it.
"""

from __future__ import annotations

import re
from pathlib import Path

from kinema.data.episode import Episode
from kinema.worlds.generate import episode_seed

EVAL_SEED = 1_000_000


def heldout_seed(index: int) -> int:
    """Seed of held-out evaluation episode `index`."""
    if index < 0:
        raise ValueError(f"index: expected >= 0, got {index}")
    return episode_seed(EVAL_SEED, index)


class EpisodeCache:
    """`get(...)` returns the episode, simulating and saving it the first time."""

    def __init__(self, root):
        self.root = Path(root)
        self._last: tuple[Path, Episode] | None = None  # benchmarks ask for one episode per camera in a row

    def _load(self, path: Path) -> Episode | None:
        if self._last is not None and self._last[0] == path:
            return self._last[1]
        if path.exists():
            try:
                ep = Episode.load(path)
            except ValueError:
                path.unlink()  # a file damaged by a crash: simulate it again
                return None
            self._last = (path, ep)
            return ep
        return None

    def _store(self, path: Path, ep: Episode) -> Episode:
        path.parent.mkdir(parents=True, exist_ok=True)
        ep.save(path)
        self._last = (path, ep)
        return ep

    def path(self, scenario: str, seed: int, *, size: int, frames: int | None, fps: float | None,
             policy: str = "expert", take: int = 0, violation: str | None = None) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "-", policy)
        variant = f"{size}px_{frames or 'default'}f_{fps or 'default'}fps_{safe}_take{take}"
        if violation:
            variant += f"_{violation}"
        return self.root / scenario / variant / f"{seed}.npz"

    def get(self, scenario: str, seed: int, *, size: int = 64, frames: int | None = None, fps: float | None = None,
            policy: str = "expert", take: int = 0, violation: str | None = None) -> Episode:
        path = self.path(scenario, seed, size=size, frames=frames, fps=fps, policy=policy, take=take,
                         violation=violation)
        ep = self._load(path)
        if ep is not None:
            return ep
        from kinema.eval.simulator import simulate  # MuJoCo only when something must be simulated

        return self._store(path, simulate(scenario, seed, size=size, frames=frames, fps=fps, policy=policy,
                                          take=take, violation=violation))

    def get_closed_loop(self, task: str, seed: int, policy, *, size: int = 64) -> Episode:
        """The episode of `policy` (a kinema.eval.policy.Policy, cached under its name) acting in `task`."""
        path = self.path(task, seed, size=size, frames=None, fps=None, policy=f"closed-loop-{policy.name}")
        ep = self._load(path)
        if ep is not None:
            return ep
        from kinema.eval.simulator import run_policy

        return self._store(path, run_policy(task, seed, policy, size=size))
