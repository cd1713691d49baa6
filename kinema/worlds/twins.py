"""Physically implausible twins: the same scene and seed with one law of physics broken.

A twin runs exactly as its original until `frame`, where one violation starts:
- teleport:      the object jumps 15-30 cm sideways between two frames;
- pass_through:  the object stops colliding and sinks through whatever holds it;
- falls_upward:  from then on gravity pulls the object up;
- colour_change: the object's colour switches to another palette colour.
The label (type, frame, time, object) is stored with the episode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import mujoco
import numpy as np

from kinema.worlds.scene import PALETTE

VIOLATIONS = ("teleport", "pass_through", "falls_upward", "colour_change")


@dataclass
class Violation:
    type: str
    frame: int
    object: int  # object id
    object_name: str
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def pick_violation(scene, frames: int, rng: np.random.Generator, kind: str | None = None) -> Violation:
    if kind is None:
        kind = VIOLATIONS[int(rng.integers(len(VIOLATIONS)))]
    if kind not in VIOLATIONS:
        raise ValueError(f"unknown violation {kind!r}; expected one of {', '.join(VIOLATIONS)}")
    movable = [o for o in scene.objects if o["kind"] == "dynamic"]
    if not movable:
        raise ValueError("the scene has no free object to break physics with")
    obj = movable[int(rng.integers(len(movable)))]
    frame = int(rng.integers(max(1, frames // 4), max(2, (3 * frames) // 4)))
    params: dict = {}
    if kind == "teleport":
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.15, 0.3)
        params["offset"] = [float(dist * np.cos(ang)), float(dist * np.sin(ang)), 0.02]
    elif kind == "colour_change":
        others = [c for c in PALETTE if c != obj["colour"] and c not in {o["colour"] for o in scene.objects}]
        new = others[int(rng.integers(len(others)))]
        params.update(colour=new, rgb=list(PALETTE[new]))
    return Violation(kind, frame, obj["id"], obj["name"], params)


def apply_violation(v: Violation, t: int, model: mujoco.MjModel, data: mujoco.MjData, scene) -> None:
    """Called before frame t is recorded; acts once at v.frame (forces persist after)."""
    if t != v.frame:
        return
    bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, v.object_name)
    geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] == bid]
    if v.type == "teleport":
        adr = model.jnt_qposadr[model.body_jntadr[bid]]
        data.qpos[adr : adr + 3] += v.params["offset"]
    elif v.type == "pass_through":
        model.geom_contype[geoms] = 0
        model.geom_conaffinity[geoms] = 0
    elif v.type == "falls_upward":
        # twice its weight upwards: net acceleration g, pointing up
        data.xfrc_applied[bid, 2] = 2.0 * model.body_subtreemass[bid] * -model.opt.gravity[2]
    elif v.type == "colour_change":
        model.geom_rgba[geoms, :3] = v.params["rgb"]
    mujoco.mj_forward(model, data)
