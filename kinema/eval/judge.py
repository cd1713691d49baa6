"""Plausibility judges: score an episode or a video, higher = more physically plausible.

Legend: T frames, K object slots, H height, W width.

The `Judge` interface is what the plausibility benchmark needs from a judge:
a name and `score(item) -> float`, where item is an `Episode` (every stream:
frames, masks, object states, caption) or a bare video uint8 [T, H, W, 3].
A learned judge (the reasoner, reading frames and answering "is this
plausible?") registers a loader, as predictors do:
`register_judge_loader(kind, fn)`, fn(path, **options) -> Judge.

Until one exists, `PhysicsStateJudge` proves the harness on the simulator's
ground truth. It looks for the four violations the worlds inject
(kinema.worlds.twins), each as a strength where about 1 means "clearly
violated", and scores minus the largest:

  teleport       a jump the velocities cannot explain: per object and frame,
                 the distance from the step p(t+1) - p(t) to the segment
                 between dt v(t) and dt v(t+1) (an impact inside the step
                 turns the velocity, but keeps the step between the two),
                 over JUMP_SCALE;
  falls_upward   sustained upward acceleration: the smallest a_z over
                 SUSTAIN consecutive frames (finite differences of the
                 recorded vz), over UP_SCALE; bounces are short spikes, an
                 upward pull lasts;
  pass_through   an object's centre where no solid lets it be: below the
                 floor by more than its smallest half-size allows, or inside
                 another box-shaped object, for PERSIST frames in a row (a hard
                 impact sinks into the soft contact for one); depth over
                 DEPTH_SCALE;
  colour_change  an object's colour jumping between frames: the chromaticity
                 (r, g, b)/(r + g + b) of its mean masked colour, per camera,
                 changing by more than shading does, over CHROMA_SCALE.
Objects the robot moves are included; the robot itself is not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import mujoco
import numpy as np

from kinema.data.episode import Episode
from kinema.eval.loaders import LOADER_MODULES, load_from_checkpoint  # LOADER_MODULES re-exported

JUMP_SCALE = 0.05  # m unexplained by the velocities
UP_SCALE = 5.0  # m/s^2 upward, held for SUSTAIN frames
SUSTAIN = 5  # frames (0.31 s at 16 fps): a tumbling box pivoting on an edge rises for fewer
DEPTH_SCALE = 0.01  # m inside a solid
PERSIST = 2
CHROMA_SCALE = 0.1  # chromaticity change between consecutive frames
MIN_COLOUR_PIXELS = 3


@runtime_checkable
class Judge(Protocol):
    name: str

    def score(self, item) -> float:
        """item: an Episode or a video uint8 [T, H, W, 3] -> plausibility, higher = more plausible."""
        ...


def _movable(ep: Episode) -> list[dict]:
    return [o for o in ep.objects_info if o.get("kind") == "dynamic"]


def _inscribed(o: dict) -> float:
    """Radius of the largest ball inside the object (the least a resting centre can be above the floor)."""
    s = o["size"]
    return float(min(s)) if o["shape"] in ("box", "cylinder", "sphere") else 0.0


def teleport_strength(ep: Episode) -> float:
    dt = 1.0 / ep.fps
    worst = 0.0
    for o in _movable(ep):
        s = ep.objects[:, o["id"] - 1]  # [T, 13]
        step = s[1:, :3] - s[:-1, :3]  # [T-1, 3]
        a, b = dt * s[:-1, 7:10], dt * s[1:, 7:10]  # the segment's ends
        ab = b - a
        u = np.clip(((step - a) * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
        off = np.linalg.norm(step - (a + u[:, None] * ab), axis=1)
        worst = max(worst, float(off.max(initial=0.0)))
    return worst / JUMP_SCALE


def upward_strength(ep: Episode) -> float:
    dt = 1.0 / ep.fps
    worst = 0.0
    for o in _movable(ep):
        az = np.diff(ep.objects[:, o["id"] - 1, 9]) / dt  # [T-1]
        if len(az) >= SUSTAIN:
            held = np.lib.stride_tricks.sliding_window_view(az, SUSTAIN).min(axis=1)
            worst = max(worst, float(held.max()))
    return max(worst, 0.0) / UP_SCALE


def penetration_strength(ep: Episode) -> float:
    boxes = [o for o in ep.objects_info if o["shape"] == "box" and o.get("kind") in ("dynamic", "static")]
    R = np.zeros(9)
    worst = 0.0
    for o in _movable(ep):
        c = ep.objects[:, o["id"] - 1, :3]  # [T, 3]
        depth = _inscribed(o) - c[:, 2]  # [T] how far below where the floor lets its centre be
        for b in boxes:
            if b["id"] == o["id"]:
                continue
            sb = ep.objects[:, b["id"] - 1]
            half = np.asarray(b["size"], float)
            for t in range(ep.length):
                mujoco.mju_quat2Mat(R, sb[t, 3:7])
                local = R.reshape(3, 3).T @ (c[t] - sb[t, :3])
                depth[t] = max(depth[t], float((half - np.abs(local)).min()))  # > 0: the centre is inside the box
        if ep.length >= PERSIST:
            depth = np.lib.stride_tricks.sliding_window_view(depth, PERSIST).min(axis=1)
        worst = max(worst, float(depth.max()))
    return worst / DEPTH_SCALE


def colour_strength(ep: Episode) -> float:
    worst = 0.0
    for cam in ep.cameras:
        f, m = ep.frames[cam].astype(np.float64), ep.masks[cam]
        for o in _movable(ep):
            chroma = []
            for t in range(ep.length):
                px = f[t][m[t] == o["id"]]
                if len(px) >= MIN_COLOUR_PIXELS:
                    mean = px.mean(axis=0)
                    chroma.append(mean / max(mean.sum(), 1e-6))
                else:
                    chroma.append(None)
            for a, b in zip(chroma[:-1], chroma[1:]):
                if a is not None and b is not None:
                    worst = max(worst, float(np.abs(a - b).max()))
    return worst / CHROMA_SCALE


class PhysicsStateJudge:
    """Checks the simulator's ground truth for the four injected violations (see the module docstring)."""

    name = "state_checker"

    def strengths(self, ep: Episode) -> dict[str, float]:
        return dict(teleport=teleport_strength(ep), falls_upward=upward_strength(ep),
                    pass_through=penetration_strength(ep), colour_change=colour_strength(ep))

    def score(self, item) -> float:
        if not isinstance(item, Episode):
            raise ValueError(f"judge {self.name!r} reads simulator ground truth (object states, masks): expected an "
                             f"Episode, got {type(item).__name__}")
        return -max(self.strengths(item).values())


# ---------------------------------------------------------------- the registry

_JUDGE_LOADERS: dict[str, Callable[..., Judge]] = {}
JUDGES = ("state_checker",)


def register_judge_loader(kind: str, fn: Callable[..., Judge]) -> None:
    """Register `fn(path: Path, **options) -> Judge` for checkpoints whose config.json says `"kind": kind`."""
    if not kind or not isinstance(kind, str) or not callable(fn):
        raise ValueError("register_judge_loader: expected a non-empty kind string and a callable")
    _JUDGE_LOADERS[kind] = fn


def get_judge(spec: str, **options) -> Judge:
    """'baseline:state_checker' (or 'state_checker') or a checkpoint folder -> a judge."""
    name = spec.split(":", 1)[1] if spec.startswith("baseline:") else spec
    if name == "state_checker":
        return PhysicsStateJudge()
    if not Path(spec).is_dir():
        raise ValueError(f"unknown judge {spec!r}; expected one of {', '.join(JUDGES)} or a checkpoint folder")
    return load_from_checkpoint(spec, _JUDGE_LOADERS, "judge", "the reasoner registers one with "
                                "kinema.eval.judge.register_judge_loader(kind, fn)", **options)
