"""Run one world from one seed: step the physics, render every camera, record everything.

Legend: T frames, C cameras, K object slots, A action dims.

`rollout(world, seed)` returns an `Episode`. The same seed gives byte-identical
frames and states: every random choice comes from one numpy Generator seeded
with it, and MuJoCo is deterministic on a given machine.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from kinema.data.episode import Episode
from kinema.worlds.audio import synthesize_contacts
from kinema.worlds.language import describe
from kinema.worlds.render import MultiCameraRenderer
from kinema.worlds.scene import cross3
from kinema.worlds.twins import Violation, apply_violation, pick_violation

SAMPLE_RATE = 16_000
IMPACT_WINDOW_S = 0.015  # contact force is integrated this long after an impact starts
MIN_IMPACT_SPEED = 0.15  # m/s closing speed; below it a touch is resting contact, not an impact
REFRACTORY_S = 0.05  # a pair cannot start a new impact sooner than this
PLACED_GAP_M = 0.002  # bodies placed closer than this count as touching at the start (they settle, not strike)
PART_S = 0.1  # a pair placed touching must be apart this long before its contacts count as collisions


def object_geom_map(model: mujoco.MjModel, objects: list[dict]) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Object id per geom, and for each object what carries its pose: ("body", id) or ("geom", id)."""
    geom_object = np.zeros(model.ngeom, np.uint8)
    carriers = []
    for obj in objects:
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj["name"])
        if bid > 0:
            # every geom of the body's subtree belongs to the object
            for g in range(model.ngeom):
                b = model.geom_bodyid[g]
                while b > 0 and b != bid:
                    b = model.body_parentid[b]
                if b == bid:
                    geom_object[g] = obj["id"]
            # a robot's state is its hand's, not its fixed base's
            carrier = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, obj.get("state_body", obj["name"]))
            carriers.append(("body", carrier))
        else:
            gid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, obj["name"])
            if gid < 0:
                raise ValueError(f"object {obj['name']!r} is neither a body nor a geom of the scene")
            geom_object[gid] = obj["id"]
            carriers.append(("geom", gid))
    return geom_object, carriers


def object_states(model, data, carriers, k_max: int) -> np.ndarray:
    """-> float64 [K, 13]: position, quaternion (w,x,y,z), linear and angular velocity, world frame."""
    out = np.zeros((k_max, 13))
    vel = np.zeros(6)
    for i, (kind, idx) in enumerate(carriers):
        if kind == "body":
            out[i, :3], out[i, 3:7] = data.xpos[idx], data.xquat[idx]
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, idx, vel, 0)
            out[i, 7:10], out[i, 10:13] = vel[3:], vel[:3]
        else:
            out[i, :3] = data.geom_xpos[idx]
            mujoco.mju_mat2Quat(out[i, 3:7], data.geom_xmat[idx])
    return out


class ContactTracker:
    """Turns the solver's contacts into impact events with an impulse (N*s)."""

    def __init__(self, model, geom_object: np.ndarray, names: dict[int, str]):
        self.model, self.geom_object, self.names = model, geom_object, names
        self._ids = [int(i) for i in geom_object]  # geom -> object id as Python ints (the per-substep loop)
        self._seen, self._seen_pairs = b"", {}  # the last substep's contact geoms and their pairs
        self.active: set[tuple[int, int]] = set()
        self.last_touch: dict[tuple[int, int], float] = {}  # when each pair was last in contact
        self.resting: set[tuple[int, int]] = set()  # placed touching and not yet visibly parted
        self.last_onset: dict[tuple[int, int], float] = {}
        self.pending: dict[tuple[int, int], dict] = {}
        self.events: list[dict] = []
        self._force = np.zeros(6)
        self._vel = np.zeros((2, 6))
        self.window_steps = max(1, round(IMPACT_WINDOW_S / model.opt.timestep))

    def prime(self, data):
        """Contacts present at the start are resting contacts, not impacts. Pairs placed within
        PLACED_GAP_M start `resting`: their impacts (a stack settling, a ball hopping along its track)
        are flagged until the pair has been apart for PART_S, which a viewer would see as parting."""
        self.active = set(self._pairs(data))
        ids = self.geom_object.astype(np.int64)
        geoms = np.flatnonzero(ids > 0)
        for i, g1 in enumerate(geoms):
            for g2 in geoms[i + 1 :]:
                a, b = ids[g1], ids[g2]
                if a == b:
                    continue
                if mujoco.mj_geomDistance(self.model, data, int(g1), int(g2), PLACED_GAP_M, None) < PLACED_GAP_M:
                    self.resting.add((int(min(a, b)), int(max(a, b))))
        self.resting |= self.active
        self.last_touch = dict.fromkeys(self.resting, 0.0)

    def _pairs(self, data) -> dict[tuple[int, int], list[int]]:
        """(object a, object b) -> indices of the contacts between them, a < b."""
        if data.ncon == 0:
            return {}
        geoms = data.contact.geom
        seen = geoms.tobytes()
        if seen == self._seen:  # resting bodies keep the same contacts for many substeps: the same answer (read only)
            return self._seen_pairs
        # A plain loop: it runs at every substep over a handful of contacts, where numpy's per-call cost dominated.
        ids = self._ids
        pairs: dict[tuple[int, int], list[int]] = {}
        for c, (g1, g2) in enumerate(geoms.tolist()):
            a, b = ids[g1], ids[g2]
            if a != b and a > 0 and b > 0:
                pairs.setdefault((a, b) if a < b else (b, a), []).append(c)
        self._seen, self._seen_pairs = seen, pairs
        return pairs

    def step(self, model, data, time: float, fps: float):
        pairs = self._pairs(data)
        for key, cons in pairs.items():
            if key in self.pending:
                ev = self.pending[key]
                for c in cons:
                    mujoco.mj_contactForce(model, data, c, self._force)
                    ev["impulse"] += abs(self._force[0]) * model.opt.timestep
            elif key not in self.active and time - self.last_onset.get(key, -1.0) > REFRACTORY_S:
                c = cons[0]
                speed = self._closing_speed(model, data, c)
                if speed >= MIN_IMPACT_SPEED:
                    self.last_onset[key] = time
                    self.pending[key] = dict(
                        time=round(time, 6), frame=int(math.floor(time * fps + 1e-9)), a=key[0], b=key[1],
                        names=[self.names[key[0]], self.names[key[1]]], speed=float(speed),
                        resting=key in self.resting,
                        position=[float(v) for v in data.contact.pos[c]], impulse=0.0, _left=self.window_steps,
                    )
        for key in list(self.pending):
            ev = self.pending[key]
            ev["_left"] -= 1
            if ev["_left"] <= 0:
                del ev["_left"]
                self.events.append(self.pending.pop(key))
        self.active = set(pairs)
        for key in pairs:
            self.last_touch[key] = time
        self.resting -= {k for k in self.resting if time - self.last_touch[k] >= PART_S}

    def _closing_speed(self, model, data, c) -> float:
        """Relative velocity of the two geoms at the contact point, along the contact normal."""
        g, p = data.contact.geom[c], data.contact.pos[c]
        v = np.zeros((2, 3))
        for i in range(2):
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_GEOM, g[i], self._vel[i], 0)
            v[i] = self._vel[i, 3:] + cross3(self._vel[i, :3], p - data.geom_xpos[g[i]])
        return float(abs(np.dot(v[1] - v[0], data.contact.frame[c][:3])))

    def finish(self) -> list[dict]:
        for ev in self.pending.values():
            ev.pop("_left", None)
            self.events.append(ev)
        self.pending.clear()
        return sorted(self.events, key=lambda e: (e["time"], e["a"], e["b"]))


def substeps_per_frame(fps: float, max_dt: float = 0.002) -> int:
    return max(1, math.ceil(1.0 / (fps * max_dt)))


class Unstable(RuntimeError):
    """MuJoCo met NaN, Inf or huge accelerations (mjWARN_BADQACC). It then resets the state to the model's initial
    one on its own, so every object would jump back to where it was built: the episode is not kept."""


UNSTABLE_RETRIES = 3  # substeps x2, x4, x8 before giving up


def rollout(
    world,
    seed: int,
    *,
    size: int = 64,
    fps: float | None = None,
    frames: int | None = None,
    policy: str = "expert",
    violation: str | Violation | None = None,
    render: bool = True,
) -> Episode:
    """Simulate `world` from `seed`. violation: None, "random" or a violation type name (a twin).

    An episode whose simulation goes unstable (a spinning top thrown upward by its twin's violation, for one) is
    simulated again from the start with twice the substeps, up to UNSTABLE_RETRIES times; info["substeps"] records
    the count used. Every stable episode is simulated once, exactly as before."""
    fps = float(fps or world.fps)
    frames = int(frames or world.frames)
    if frames < 1 or fps <= 0 or size < 8:
        raise ValueError(f"need frames >= 1, fps > 0 and size >= 8; got frames={frames}, fps={fps}, size={size}")
    n_sub = substeps_per_frame(fps)
    for attempt in range(UNSTABLE_RETRIES + 1):
        try:
            return _rollout(world, seed, size, fps, frames, policy, violation, render, n_sub * 2**attempt)
        except Unstable as e:
            last = e
    raise RuntimeError(f"{world.name} seed {seed}{' (twin)' if violation else ''}: the simulation stayed unstable with "
                       f"{n_sub * 2**UNSTABLE_RETRIES} substeps a frame ({last})")


def _rollout(world, seed, size, fps, frames, policy, violation, render, n_sub) -> Episode:
    rng = np.random.default_rng(seed)
    scene = world.build(rng)
    model = mujoco.MjModel.from_xml_string(scene.xml)
    model.opt.timestep = 1.0 / (fps * n_sub)
    data = mujoco.MjData(model)
    for name, qvel in scene.init_qvel.items():
        jnt = model.body_jntadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)]
        data.qvel[model.jnt_dofadr[jnt] : model.jnt_dofadr[jnt] + len(qvel)] = qvel
    mujoco.mj_forward(model, data)

    geom_object, carriers = object_geom_map(model, scene.objects)
    k_max = world.max_objects
    names = {o["id"]: o["name"] for o in scene.objects}
    tracker = ContactTracker(model, geom_object, names)
    tracker.prime(data)
    # The agent draws from its own stream so a twin's violation choice cannot shift it.
    agent = world.make_agent(model, data, scene, np.random.default_rng([seed, 1]), policy, fps)
    if isinstance(violation, str):
        violation = pick_violation(scene, frames, np.random.default_rng([seed, 2]), None if violation == "random" else violation)
    renderer = MultiCameraRenderer(model, scene.cameras, size, geom_object) if render else None

    C = len(scene.cameras)
    rgb = np.zeros((frames, C, size, size, 3), np.uint8)
    masks = np.zeros((frames, C, size, size), np.uint8)
    K_ = np.zeros((frames, C, 3, 3))
    E_ = np.zeros((frames, C, 4, 4))
    objects = np.zeros((frames, k_max, 13))
    states, actions = [], []
    try:
        for t in range(frames):
            if violation is not None:
                apply_violation(violation, t, model, data, scene)
            if agent is not None:
                agent.before_frame(t)
            if renderer is not None:
                rgb[t], masks[t] = renderer.render(data)
                K_[t], E_[t] = renderer.camera_params(data)
            objects[t] = object_states(model, data, carriers, k_max)
            states.append(world.observation_state(model, data, objects[t], agent))
            actions.append(agent.act(t) if agent is not None else np.zeros(0))
            if t == frames - 1:
                break
            for _ in range(n_sub):
                mujoco.mj_step(model, data)
                tracker.step(model, data, data.time, fps)
            if data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number:
                raise Unstable(f"bad accelerations at t={data.time:.3f} s, with {n_sub} substeps a frame")
            # mj_step leaves positions and velocities derived from the state before its last
            # integration; recompute them so frame t+1 shows the state at exactly (t+1)/fps.
            mujoco.mj_forward(model, data)
    finally:
        if renderer is not None:
            renderer.close()
    contacts = tracker.finish()
    duration = frames / fps
    audio = synthesize_contacts(contacts, scene.objects, duration, SAMPLE_RATE, np.random.default_rng([seed, 3]))
    outcome = world.outcome(scene, objects, contacts, agent, fps)
    info = dict(
        scenario=world.name, family=world.family, robot_type=world.robot_type, params=scene.params,
        state_names=world.state_names(k_max), action_names=list(world.action_names), policy=policy if agent else None,
        outcome=outcome, plausible=violation is None,
        violation=dict(violation.to_dict(), time=violation.frame / fps) if violation else None,
        size=size, frames=frames, substeps=n_sub, timestep=model.opt.timestep, max_objects=k_max,
    )
    caption, qa, task = describe(world, scene, objects, contacts, outcome, info, fps)
    cams = scene.cameras
    return Episode(
        scenario=world.name, seed=int(seed), fps=fps, cameras=list(cams),
        frames={c: rgb[:, i].copy() for i, c in enumerate(cams)},
        masks={c: masks[:, i].copy() for i, c in enumerate(cams)},
        state=np.asarray(states, np.float32).reshape(frames, -1),
        objects=objects,
        action=np.asarray(actions, np.float32).reshape(frames, len(world.action_names)),
        intrinsics={c: K_[:, i].copy() for i, c in enumerate(cams)},
        extrinsics={c: E_[:, i].copy() for i, c in enumerate(cams)},
        audio=audio, sample_rate=SAMPLE_RATE, contacts=contacts, task=task, caption=caption, qa=qa,
        objects_info=scene.objects, info=info,
    )
