"""Tabletop manipulation: a gantry arm with a parallel gripper pushes, picks and places, and stacks blocks.

Legend: T frames, K object slots.

The robot ("kinema_gantry_arm") is a Cartesian (gantry) arm, honestly so: three
prismatic joints x, y, z carry a spherical wrist of three hinges (yaw about z,
then pitch about y, then roll about x: R = Rz(yaw) Ry(pitch) Rx(roll)), a palm
and two fingers on prismatic joints. Every joint is driven by a stiff position
actuator; the arm's bodies are gravity-compensated. A bridge, rails, posts and a
vertical column are drawn (visual only) so a viewer sees the arm come down from
above. The whole arm is one object (kind "robot", name "robot") in the masks; its
object state is the hand's pose and velocity.

Frame and units: the world/table frame, metres and radians; z is up and the
origin is the centre of the table, on its surface (the table is the floor plane).

End effector (tool centre point, TCP): the point midway between the fingers, at
half the finger length (fingertips are 5 cm below it). At the identity rotation
the gripper points straight down (approach axis = -z), the fingers close along
the world y axis and the hand's x axis is the world x axis.

Action (10-D, one per frame, applied after the frame is recorded; `action_names`):
- dx, dy, dz: TCP position delta, world frame, metres. The step is clipped to
  MAX_STEP (3 cm, i.e. 0.48 m/s at 16 fps) in norm, then the target is clipped
  to the workspace box WORKSPACE_LO..WORKSPACE_HI (x, y in [-0.32, 0.32],
  z in [0.05, 0.35]: at z = 0.05 a downward-pointing gripper touches the table).
- r11, r21, r31, r12, r22, r32: the first two columns of a delta rotation ΔR,
  world frame, applied as R_target <- ΔR · R_target. The 6 numbers are made a
  rotation by Gram-Schmidt (a degenerate input reads as the identity) and the
  rotation angle is clipped to MAX_ROT (0.25 rad per frame, 4 rad/s).
- gripper: absolute closure target in [0, 1] (clipped); 0 = fully open (16 cm
  between the fingers), 1 = closed (fingers touching).
The agent integrates the deltas into a target pose, solves the joint targets
exactly (wrist centre = TCP + 0.102 m along the hand's +z; ZYX Euler angles on
unlimited hinges, the solution nearest the previous one, so the wrist turns
continuously and without limit about any axis; at pitch = ±90° the yaw is held)
and returns the action it actually applied (after clipping), so replaying the
recorded actions reproduces the targets.

observation.state (10-D, `state_names`): measured TCP position (3), measured TCP
rotation as 6D (first two columns of its rotation matrix, world frame) (6), and
the measured gripper opening normalized to [0, 1] (1 = fully open; note it is an
opening, where the action's gripper is a closure).

Policies: "expert" is a scripted state machine reading the ground-truth block
poses from the simulator; "random" sends smooth random deltas and random
gripper commands.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from kinema.worlds.language import display, yes_no
from kinema.worlds.scene import SceneBuilder, cross3, fmt, quat_from_axis_angle
from kinema.worlds.world import World

POLICIES = ("expert", "noisy_expert:EPS", "random")

WORKSPACE_LO = np.array([-0.32, -0.32, 0.05])
WORKSPACE_HI = np.array([0.32, 0.32, 0.35])
MAX_STEP = 0.03  # m per frame
MAX_ROT = 0.25  # rad per frame

TCP_OFFSET = 0.102  # wrist centre -> TCP, along the hand's -z
FINGER_HALF = (0.018, 0.007, 0.05)  # finger box half-extents (hand x, y, z)
FINGER_TRAVEL = 0.08  # each finger's inner face moves from 0 (closed) to this
GANTRY_TOP = 0.95  # height of the bridge (above the cameras' views)
HOME = np.array([0.0, 0.0, 0.24])  # TCP at reset (plus a small seeded offset in x, y)

Z_TRAVEL = 0.20  # TCP height for moving around: fingertips 15 cm above the table
Z_GRASP = 0.055  # TCP height for grasping and pushing: fingertips 5 mm above the table

ARM_RGB = (0.22, 0.22, 0.25)
FRAME_RGB = (0.32, 0.32, 0.36)
FINGER_RGB = (0.12, 0.12, 0.13)

ACTION_NAMES = ("dx", "dy", "dz", "r11", "r21", "r31", "r12", "r22", "r32", "gripper")
STATE_NAMES = ("ee.x", "ee.y", "ee.z", "ee.r11", "ee.r21", "ee.r31", "ee.r12", "ee.r22", "ee.r32", "gripper.opening")


# ---- rotations --------------------------------------------------------------
def rot6d(R: np.ndarray) -> np.ndarray:
    """First two columns of R: (r11, r21, r31, r12, r22, r32)."""
    return np.concatenate([R[:, 0], R[:, 1]])


def rot_from_6d(v) -> np.ndarray:
    """Gram-Schmidt of two 3-vectors into a rotation matrix; a degenerate input gives the identity."""
    v = np.nan_to_num(np.asarray(v, float))
    a1, a2 = v[:3], v[3:6]
    n1 = np.linalg.norm(a1)
    if n1 < 1e-9:
        return np.eye(3)
    b1 = a1 / n1
    u2 = a2 - b1 * (b1 @ a2)
    n2 = np.linalg.norm(u2)
    if n2 < 1e-9:
        return np.eye(3)
    b2 = u2 / n2
    return np.column_stack([b1, b2, cross3(b1, b2)])


def rotvec(R: np.ndarray) -> np.ndarray:
    """Axis * angle of R (angle in [0, pi])."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R).reshape(-1))
    if q[0] < 0:
        q = -q
    s = np.linalg.norm(q[1:])
    if s < 1e-12:
        return np.zeros(3)
    return 2.0 * math.atan2(s, q[0]) * q[1:] / s


def rot_exp(rv) -> np.ndarray:
    angle = float(np.linalg.norm(rv))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(rv, float) / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def orthonormalize(R: np.ndarray) -> np.ndarray:
    return rot_from_6d(rot6d(R))


def unwrap_to(a: float, ref: float) -> float:
    """a + 2*pi*k closest to ref."""
    return a + 2 * math.pi * round((ref - a) / (2 * math.pi))


def zyx_euler(R: np.ndarray, prev: tuple[float, float, float]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) with R = Rz(yaw) Ry(pitch) Rx(roll), the solution nearest the previous angles.

    Every rotation has two solutions, (y, p, r) and (y + pi, pi - p, r + pi); the joints are unlimited, so
    picking the nearer one (each angle unwrapped by 2*pi) lets the wrist turn continuously through
    pitch = ±90 degrees. There (gimbal lock) the yaw is held and the rest goes into the roll.
    """
    p0 = math.asin(float(np.clip(-R[2, 0], -1.0, 1.0)))
    best, best_cost = None, math.inf
    for pitch in (p0, math.pi - p0):
        pitch = unwrap_to(pitch, prev[1])
        c = math.cos(pitch)
        if abs(c) > 1e-3:
            yaw = unwrap_to(math.atan2(R[1, 0] / c, R[0, 0] / c), prev[0])
        else:
            yaw = prev[0]
        Rx = (rot_z(yaw) @ rot_y(pitch)).T @ R
        roll = unwrap_to(math.atan2(Rx[2, 1], Rx[1, 1]), prev[2])
        cost = (yaw - prev[0]) ** 2 + (pitch - prev[1]) ** 2 + (roll - prev[2]) ** 2
        if cost < best_cost:
            best, best_cost = (yaw, pitch, roll), cost
    return best


def yaw_of(R: np.ndarray) -> float:
    return math.atan2(R[1, 0], R[0, 0])


# ---- the arm ----------------------------------------------------------------
def _box(name, pos, size, rgb, mass, collide=False):
    col = 'contype="2" conaffinity="1" condim="4" friction="1.5 0.02 0.0001"' if collide else 'contype="0" conaffinity="0"'
    return (f'<geom name="{name}" type="box" pos="{fmt(pos)}" size="{fmt(size)}" rgba="{fmt(rgb)} 1" '
            f'mass="{mass:.4g}" {col}/>')


def arm_xml(home_tcp: np.ndarray) -> tuple[str, str]:
    """-> (body XML of the whole arm under the body "robot", actuator XML).

    Each prismatic joint's `ref` is its home value, so the XML pose is the home pose and
    qpos is the absolute coordinate: x, y, z of the wrist centre, finger opening in metres.
    Robot geoms have contype 2 / conaffinity 1: they touch blocks and the table, not each other.
    """
    w = home_tcp + np.array([0.0, 0.0, TCP_OFFSET])  # wrist centre at home (gripper pointing down)
    fy = FINGER_HALF[1]
    top = GANTRY_TOP
    posts = "".join(
        f'<geom type="box" pos="{sx * 0.62:.3g} {sy * 0.62:.3g} {top / 2:.4g}" size="0.022 0.022 {top / 2:.4g}" '
        f'rgba="{fmt(FRAME_RGB)} 1" contype="0" conaffinity="0"/>'
        for sx in (-1, 1) for sy in (-1, 1)
    )
    rails = "".join(
        f'<geom type="box" pos="0 {sy * 0.62:.3g} {top:.4g}" size="0.64 0.025 0.025" rgba="{fmt(FRAME_RGB)} 1" '
        f'contype="0" conaffinity="0"/>'
        for sy in (-1, 1)
    )
    finger = lambda side, sgn: (  # noqa: E731
        f'<body name="finger_{side}" pos="0 {sgn * FINGER_TRAVEL:.4g} {-TCP_OFFSET:.4g}" gravcomp="1">'
        f'<joint name="finger_{side}" type="slide" axis="0 {sgn} 0" range="0 {FINGER_TRAVEL:.4g}" ref="{FINGER_TRAVEL:.4g}" '
        f'damping="1" armature="0.01"/>'
        + _box(f"finger_{side}", [0, sgn * fy, 0], FINGER_HALF, FINGER_RGB, 0.1, collide=True)
        + "</body>"
    )
    body = (
        f'<body name="robot">{posts}{rails}'
        f'<body name="gantry_x" pos="{w[0]:.6g} 0 0" gravcomp="1">'
        f'<joint name="arm_x" type="slide" axis="1 0 0" range="-0.45 0.45" ref="{w[0]:.6g}"/>'
        + _box("bridge", [0, 0, top], [0.03, 0.66, 0.03], FRAME_RGB, 1.0)
        + f'<body name="gantry_y" pos="0 {w[1]:.6g} 0" gravcomp="1">'
        f'<joint name="arm_y" type="slide" axis="0 1 0" range="-0.45 0.45" ref="{w[1]:.6g}"/>'
        + _box("carriage", [0, 0, top - 0.05], [0.05, 0.05, 0.03], ARM_RGB, 0.5)
        + f'<body name="gantry_z" pos="0 0 {w[2]:.6g}" gravcomp="1">'
        f'<joint name="arm_z" type="slide" axis="0 0 1" range="-0.1 0.65" ref="{w[2]:.6g}"/>'
        + _box("column", [0, 0, 0.5], [0.02, 0.02, 0.47], ARM_RGB, 0.5)
        + '<body name="wrist_yaw" gravcomp="1">'
        '<joint name="arm_yaw" type="hinge" axis="0 0 1" armature="0.02" damping="0.05"/>'
        f'<geom type="cylinder" pos="0 0 0.018" size="0.03 0.014" rgba="{fmt(ARM_RGB)} 1" mass="0.2" contype="0" conaffinity="0"/>'
        '<body name="wrist_pitch" gravcomp="1">'
        '<joint name="arm_pitch" type="hinge" axis="0 1 0" armature="0.02" damping="0.05"/>'
        f'<geom type="cylinder" quat="0.7071068 0.7071068 0 0" size="0.022 0.028" rgba="{fmt(ARM_RGB)} 1" mass="0.2" contype="0" conaffinity="0"/>'
        '<body name="hand" gravcomp="1">'
        '<joint name="arm_roll" type="hinge" axis="1 0 0" armature="0.02" damping="0.05"/>'
        f'<geom type="cylinder" pos="0 0 -0.016" size="0.016 0.014" rgba="{fmt(ARM_RGB)} 1" mass="0.1" contype="0" conaffinity="0"/>'
        + _box("palm", [0, 0, -0.04], [0.026, FINGER_TRAVEL + 2 * fy + 0.004, 0.012], ARM_RGB, 0.4, collide=True)
        + f'<site name="tcp" pos="0 0 {-TCP_OFFSET:.4g}" size="0.005" rgba="1 1 1 0" group="4"/>'
        + finger("left", 1) + finger("right", -1)
        + "</body></body></body></body></body></body></body>"
    )
    act = (
        "<actuator>"
        '<position name="arm_x" joint="arm_x" kp="10000" kv="320" ctrlrange="-0.45 0.45" forcerange="-300 300"/>'
        '<position name="arm_y" joint="arm_y" kp="10000" kv="300" ctrlrange="-0.45 0.45" forcerange="-300 300"/>'
        '<position name="arm_z" joint="arm_z" kp="10000" kv="260" ctrlrange="-0.1 0.65" forcerange="-300 300"/>'
        '<position name="arm_yaw" joint="arm_yaw" kp="60" kv="2.5" forcerange="-30 30"/>'
        '<position name="arm_pitch" joint="arm_pitch" kp="60" kv="2.5" forcerange="-30 30"/>'
        '<position name="arm_roll" joint="arm_roll" kp="60" kv="2.5" forcerange="-30 30"/>'
        f'<position name="finger_left" joint="finger_left" kp="600" kv="50" ctrlrange="0 {FINGER_TRAVEL}" forcerange="-25 25"/>'
        f'<position name="finger_right" joint="finger_right" kp="600" kv="50" ctrlrange="0 {FINGER_TRAVEL}" forcerange="-25 25"/>'
        "</actuator>"
    )
    return body, act


ARM_JOINTS = ("arm_x", "arm_y", "arm_z", "arm_yaw", "arm_pitch", "arm_roll", "finger_left", "finger_right")


class GantryAgent:
    """Integrates delta actions into a target TCP pose and drives the arm's position actuators."""

    def __init__(self, model, data, scene, rng: np.random.Generator, policy: str, fps: float):
        self.model, self.data, self.scene, self.rng, self.fps = model, data, scene, rng, fps
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self.qadr = {j: model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in ARM_JOINTS}
        self.act_id = {j: mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, j) for j in ARM_JOINTS}
        self.p_target = data.site_xpos[self.site].copy()
        self.R_target = data.site_xmat[self.site].reshape(3, 3).copy()
        self.yaw, self.pitch, self.roll = (float(data.qpos[self.qadr[j]]) for j in ("arm_yaw", "arm_pitch", "arm_roll"))
        self.grip = 1.0 - self.opening()
        self.controller = make_controller(self, scene, policy)
        self._set_ctrl()

    # ---- measurements ----
    def tcp(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()

    def tcp_rot(self) -> np.ndarray:
        return self.data.site_xmat[self.site].reshape(3, 3).copy()

    def opening(self) -> float:
        q = self.data.qpos[self.qadr["finger_left"]] + self.data.qpos[self.qadr["finger_right"]]
        return float(np.clip(q / (2 * FINGER_TRAVEL), 0.0, 1.0))

    # ---- the rollout's interface ----
    def before_frame(self, t: int) -> None:
        pass

    def act(self, t: int) -> np.ndarray:
        return self.apply(self.controller(t))

    def apply(self, action) -> np.ndarray:
        """Apply one 10-D action; returns the action actually applied after clipping."""
        a = np.nan_to_num(np.asarray(action, float).reshape(-1))
        if a.shape != (10,):
            raise ValueError(f"a tabletop action has 10 numbers ({', '.join(ACTION_NAMES)}); got {a.shape[0]}")
        dp = a[:3]
        n = np.linalg.norm(dp)
        if n > MAX_STEP:
            dp = dp * (MAX_STEP / n)
        p_new = np.clip(self.p_target + dp, WORKSPACE_LO, WORKSPACE_HI)
        rv = rotvec(rot_from_6d(a[3:9]))
        ang = np.linalg.norm(rv)
        if ang > MAX_ROT:
            rv = rv * (MAX_ROT / ang)
        dR = rot_exp(rv)
        R_new = orthonormalize(dR @ self.R_target)
        applied = np.concatenate([p_new - self.p_target, rot6d(dR), [np.clip(a[9], 0.0, 1.0)]])
        self.p_target, self.R_target, self.grip = p_new, R_new, float(applied[9])
        self._set_ctrl()
        return applied

    def _set_ctrl(self):
        self.yaw, self.pitch, self.roll = zyx_euler(self.R_target, (self.yaw, self.pitch, self.roll))
        wrist = self.p_target + TCP_OFFSET * self.R_target[:, 2]
        ctrl = self.data.ctrl
        for j, v in zip(("arm_x", "arm_y", "arm_z"), wrist):
            ctrl[self.act_id[j]] = v
        ctrl[self.act_id["arm_yaw"]] = self.yaw
        ctrl[self.act_id["arm_pitch"]] = self.pitch
        ctrl[self.act_id["arm_roll"]] = self.roll
        q = FINGER_TRAVEL * (1.0 - self.grip)
        ctrl[self.act_id["finger_left"]] = q
        ctrl[self.act_id["finger_right"]] = q

    # ---- helpers for scripted controllers ----
    def toward(self, p_des, yaw_des: float, grip: float, speed: float = 0.025, rot_speed: float = 0.2) -> np.ndarray:
        """The action that moves the target toward (p_des, Rz(yaw_des) pointing down) at most `speed` per frame."""
        dp = np.asarray(p_des, float) - self.p_target
        n = np.linalg.norm(dp)
        if n > speed:
            dp *= speed / n
        rv = rotvec(rot_z(yaw_des) @ self.R_target.T)
        ang = np.linalg.norm(rv)
        if ang > rot_speed:
            rv *= rot_speed / ang
        return np.concatenate([dp, rot6d(rot_exp(rv)), [grip]])

    def reached(self, p_des, yaw_des: float | None = None, tol: float = 0.01) -> bool:
        if np.linalg.norm(np.asarray(p_des) - self.p_target) > 1e-4:
            return False
        if np.linalg.norm(self.tcp() - self.p_target) > tol:
            return False
        if yaw_des is not None:
            return np.linalg.norm(rotvec(rot_z(yaw_des) @ self.tcp_rot().T)) < 0.05
        return True

    def body(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        bid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)
        return self.data.xpos[bid].copy(), self.data.xmat[bid].reshape(3, 3).copy()


# ---- controllers ------------------------------------------------------------
def parse_policy(policy: str) -> tuple[str, float]:
    """'expert', 'random' or 'noisy_expert:EPS' -> (kind, eps); eps is 0 but for the noisy expert."""
    if policy in ("expert", "random"):
        return policy, 0.0
    kind, _, eps = str(policy).partition(":")
    try:
        if kind != "noisy_expert" or not 0.0 <= float(eps) <= 1.0:
            raise ValueError
    except ValueError:
        raise ValueError(f"unknown policy {policy!r} for the tabletop worlds; expected one of: {', '.join(POLICIES)} "
                         "(EPS a probability in [0, 1])") from None
    return kind, float(eps)


def noisy_step(action: np.ndarray, rng: np.random.Generator, eps: float) -> np.ndarray:
    """The noisy expert's action: with probability eps the hand moves a full step in a random direction instead
    (turn and gripper as the expert commands). Shared by the worlds' episodes and kinema.eval.policy.NoisyExpert."""
    if rng.random() < eps:
        d = rng.normal(size=3)
        action = action.copy()
        action[:3] = MAX_STEP * d / np.linalg.norm(d)
    return action


def make_controller(agent: GantryAgent, scene, policy: str):
    kind, eps = parse_policy(policy)
    if kind == "random":
        return RandomPolicy(agent)
    expert = PushExpert(agent, scene) if scene.params["task"] == "push" else PickPlaceExpert(agent, scene)
    if kind == "expert":
        return expert
    noise = agent.rng.spawn(1)[0]  # its own stream: the expert's draws stay as they are
    return lambda t: noisy_step(expert(t), noise, eps)  # the expert sees every frame, so it recovers


def nearest_mod(angle: float, period: float, ref: float) -> float:
    """angle + k*period closest to ref."""
    return angle + period * round((ref - angle) / period)


class RandomPolicy:
    """Smooth random motion: wander toward random waypoints (new every 0.5-1.5 s) with a low-pass
    filtered, noisy velocity; random yaw and small tilts; a random gripper command every ~10 frames."""

    LO, HI = np.array([-0.28, -0.28, 0.05]), np.array([0.28, 0.28, 0.32])

    def __init__(self, agent: GantryAgent):
        self.agent, self.rng = agent, agent.rng
        self.v = np.zeros(3)
        self.timer = 0
        self.grip = float(self.rng.uniform(0, 1))

    def _new_waypoint(self):
        rng = self.rng
        self.goal = rng.uniform(self.LO, self.HI)
        self.R_goal = rot_z(rng.uniform(-np.pi, np.pi)) @ rot_exp([*rng.uniform(-0.35, 0.35, 2), 0.0])
        self.speed = rng.uniform(0.008, 0.025)
        self.timer = int(rng.integers(8, 25))

    def __call__(self, t: int) -> np.ndarray:
        rng, a = self.rng, self.agent
        if self.timer <= 0:
            self._new_waypoint()
        self.timer -= 1
        dp = self.goal - a.p_target
        n = np.linalg.norm(dp)
        if n > self.speed:
            dp *= self.speed / n
        self.v = 0.7 * self.v + 0.3 * (dp + rng.normal(0.0, 0.006, 3))
        rv = rotvec(self.R_goal @ a.R_target.T)
        ang = np.linalg.norm(rv)
        if ang > 0.12:
            rv *= 0.12 / ang
        rv = rv + rng.normal(0.0, 0.03, 3)
        if rng.random() < 0.1:
            self.grip = float(rng.uniform(0, 1))
        return np.concatenate([self.v, rot6d(rot_exp(rv)), [self.grip]])


class PushExpert:
    """Lower a partly open gripper behind the block and push it along the block-goal line, closed-loop."""

    GRIP = 0.75  # partly open: the two fingers push side by side, 4 cm apart (blocks are at least 6 cm wide)

    def __init__(self, agent: GantryAgent, scene):
        self.agent, self.p = agent, scene.params
        self.block = self.p["block"]
        self.half = np.array(self.p["block_half"])
        self.goal = np.array(self.p["goal_xy"])
        self.radius = self.p["goal_radius"]
        self.phase, self.hold, self.done = "approach", None, False

    def _geometry(self):
        a = self.agent
        pb, Rb = a.body(self.block)
        e = self.goal - pb[:2]
        dist = float(np.linalg.norm(e))
        d = e / max(dist, 1e-9)
        theta = math.atan2(d[1], d[0]) - yaw_of(Rb)
        r = self.half[0] * abs(math.cos(theta)) + self.half[1] * abs(math.sin(theta))
        s = pb[:2] - d * (r + FINGER_HALF[0] + 0.004)  # TCP where the fingers touch the block's back
        yaw = nearest_mod(math.atan2(d[1], d[0]), math.pi, yaw_of(a.R_target))
        return pb, d, dist, r, s, yaw

    def __call__(self, t: int) -> np.ndarray:
        a = self.agent
        pb, d, dist, r, s, yaw = self._geometry()
        if self.phase == "approach":
            p = np.array([*(s - 0.03 * d), Z_TRAVEL])
            if a.reached(p, yaw, 0.012):
                self.phase = "descend"
            return a.toward(p, yaw, self.GRIP)
        if self.phase == "descend":
            p = np.array([*(s - 0.03 * d), Z_GRASP])
            if a.reached(p, tol=0.008):
                self.phase = "push"
            return a.toward(p, yaw, self.GRIP, speed=0.025)
        if self.phase == "push":
            tcp = a.tcp()
            rel = tcp[:2] - pb[:2]
            lateral = rel - d * (rel @ d)
            if dist < 0.3 * self.radius or np.linalg.norm(lateral) > 0.035 or rel @ d > -0.02:
                # done, or lost the block: back away from it before lifting (lifting while touching tips it)
                away = rel / max(np.linalg.norm(rel), 1e-9)
                self.phase = "back"
                self.hold = np.array([*(a.p_target[:2] + 0.04 * away), Z_GRASP])
                self.done = dist < 0.3 * self.radius
            else:
                # advance along the block-goal line, steering the target back onto it
                tgt = a.p_target[:2] - pb[:2]
                lat_t = tgt - d * (tgt @ d)
                v = float(np.clip(dist, 0.004, 0.012))
                xy = a.p_target[:2] + d * v - 0.3 * lat_t
                lead = xy - tcp[:2]  # never run far ahead of a blocked pusher
                if np.linalg.norm(lead) > 0.02:
                    xy = tcp[:2] + lead * (0.02 / np.linalg.norm(lead))
                return a.toward(np.array([*xy, Z_GRASP]), yaw, self.GRIP, speed=0.02, rot_speed=0.08)
        if self.phase == "back":
            if a.reached(self.hold, tol=0.02):
                self.phase, self.hold = "up", np.array([*self.hold[:2], Z_TRAVEL])
            return a.toward(self.hold, yaw_of(a.R_target), self.GRIP, speed=0.015)
        if self.phase == "up":  # lift clear; approach again unless the block is in the goal
            if a.reached(self.hold, tol=0.02) and not self.done:
                self.phase = "approach"
            return a.toward(self.hold, yaw_of(a.R_target), self.GRIP, speed=0.02)
        raise AssertionError(self.phase)


class PickPlaceExpert:
    """Grasp the block across its narrower side, lift, carry, lower onto the goal (or the base block), release."""

    def __init__(self, agent: GantryAgent, scene):
        self.agent, self.p = agent, scene.params
        self.block = self.p["block"]
        self.half = np.array(self.p["block_half"])
        self.phase, self.count, self.hold, self.offset = "above", 0, None, np.zeros(3)

    def _place(self) -> tuple[np.ndarray, float, float | None]:
        """(xy of the block's centre when placed, its z when placed, yaw to match or None)."""
        if self.p["task"] == "stack":
            pb, Rb = self.agent.body(self.p["base"])
            return pb[:2], pb[2] + self.p["base_half"][2] + self.half[2] + 0.006, yaw_of(Rb)
        return np.array(self.p["goal_xy"]), self.half[2] + 0.004, None

    def _grasp_yaw(self, Rb) -> float:
        phi = yaw_of(Rb)
        # fingers close along the hand's y: align it with the block's narrower horizontal axis
        psi = phi if self.half[1] <= self.half[0] else phi + math.pi / 2
        return nearest_mod(psi, math.pi, yaw_of(self.agent.R_target))

    def __call__(self, t: int) -> np.ndarray:
        a = self.agent
        pb, Rb = a.body(self.block)
        tcp = a.tcp()
        if self.phase == "above":
            yaw = self._grasp_yaw(Rb)
            p = np.array([pb[0], pb[1], Z_TRAVEL])
            if a.reached(p, yaw, 0.012):
                self.phase = "descend"
            return a.toward(p, yaw, 0.0)
        if self.phase == "descend":
            yaw = self._grasp_yaw(Rb)
            p = np.array([pb[0], pb[1], Z_GRASP])
            if a.reached(p, yaw, 0.006):
                self.phase, self.count = "close", 0
            return a.toward(p, yaw, 0.0, speed=0.022, rot_speed=0.08)
        if self.phase == "close":
            self.count += 1
            if self.count >= 6:
                self.phase, self.hold = "lift", np.array([*a.p_target[:2], Z_TRAVEL])
            return a.toward(a.p_target, yaw_of(a.R_target), 1.0)
        if self.phase in ("lift", "carry", "lower") and pb[2] < tcp[2] - 0.09:  # dropped it: start over
            self.phase = "reopen"
            self.hold = np.array([*a.p_target[:2], Z_TRAVEL])
        if self.phase == "lift":
            if a.reached(self.hold, tol=0.01):
                self.phase, self.offset = "carry", a.tcp_rot().T @ (pb - tcp)  # the block in the hand's frame
            return a.toward(self.hold, yaw_of(a.R_target), 1.0, speed=0.02)
        if self.phase == "carry":
            xy, z_place, yaw_match = self._place()
            yaw = yaw_of(a.R_target)
            if yaw_match is not None:  # turn the held block to line up with the base
                rel = yaw_of(Rb) - yaw
                yaw = nearest_mod(yaw_match - rel, math.pi / 2, yaw)
            p = np.array([*(xy - (rot_z(yaw) @ self.offset)[:2]), Z_TRAVEL])
            if a.reached(p, yaw, 0.01) and np.linalg.norm(pb[:2] - xy) < 0.015:
                self.phase = "lower"
                self.hold = np.array([*p[:2], tcp[2] + z_place - pb[2]])
            return a.toward(p, yaw, 1.0, speed=0.025, rot_speed=0.1)
        if self.phase == "lower":
            if a.reached(self.hold, tol=0.006):
                self.phase, self.count = "release", 0
            return a.toward(self.hold, yaw_of(a.R_target), 1.0, speed=0.016)
        if self.phase == "release":
            self.count += 1
            if self.count >= 4:
                self.phase, self.hold = "retreat", np.array([*a.p_target[:2], Z_TRAVEL])
            return a.toward(a.p_target, yaw_of(a.R_target), 0.0)
        if self.phase == "reopen":
            if a.reached(self.hold, tol=0.02):
                self.phase = "above"
            return a.toward(self.hold, yaw_of(a.R_target), 0.0)
        return a.toward(self.hold, yaw_of(a.R_target), 0.0, speed=0.02)  # retreat, then stay


# ---- the worlds -------------------------------------------------------------
def tilt_deg(quat) -> float:
    w, x, y, z = quat
    return float(np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1, 1))))


def lowest_point(state, half) -> float:
    """z of a box's lowest corner, from its 13-D state and half-extents."""
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, np.asarray(state[3:7], float))
    return float(state[2] - np.abs(R.reshape(3, 3)[2]) @ np.asarray(half, float))


class TabletopWorld(World):
    family = "tabletop"
    robot_type = "kinema_gantry_arm"
    fps = 16.0
    frames = 97
    max_objects = 4
    action_names = ACTION_NAMES
    task = ""

    # ---- scene ----
    def _begin(self, rng) -> SceneBuilder:
        b = SceneBuilder(rng)
        b.floor(name="table", friction=0.4)
        return b

    def _block(self, b: SceneBuilder, rng, xy) -> dict:
        """A free box (as SceneBuilder.free_object writes one) named and described as a block."""
        half = [float(v) for v in rng.uniform(0.03, 0.045, 3)]
        yaw = rng.uniform(-np.pi, np.pi)
        mass, friction = float(rng.uniform(0.08, 0.35)), float(rng.uniform(0.5, 1.0))
        colour, rgb = b.colour()
        name = f"{colour}_block"
        pos = [xy[0], xy[1], half[2] + 0.0005]
        b.raw_body(
            f'<body name="{name}" pos="{fmt(pos)}" quat="{fmt(quat_from_axis_angle([0, 0, 1], yaw))}">'
            f'<freejoint name="{name}"/><geom name="{name}" type="box" size="{fmt(half)}" mass="{mass:.6g}" '
            f'rgba="{fmt(rgb)} 1" friction="{friction:.4g} 0.005 0.0001" condim="3"/></body>',
            name=name, kind="dynamic", shape="box", colour=colour, rgb=rgb, size=half, mass=mass,
            friction=friction, noun="block")
        return b.objects[-1]

    def _goal(self, b: SceneBuilder, rng, xy, radius) -> dict:
        colour, rgb = b.colour()
        name = f"{colour}_goal"
        b.raw_body(
            f'<geom name="{name}" type="cylinder" pos="{xy[0]:.6g} {xy[1]:.6g} 0.001" size="{radius:.5g} 0.001" '
            f'rgba="{fmt(rgb)} 1" contype="0" conaffinity="0"/>',
            name=name, kind="static", shape="cylinder", colour=colour, rgb=rgb, size=[radius, 0.001], noun="goal")
        return b.objects[-1]

    def _robot(self, b: SceneBuilder, rng):
        home = HOME + np.array([*rng.uniform(-0.04, 0.04, 2), 0.0])
        body, act = arm_xml(home)
        b.raw_body(body, name="robot", kind="robot", shape="compound", colour="dark grey", rgb=ARM_RGB,
                   size=[0.16, 0.04, 0.15], noun="robot arm", state_body="hand")
        b.extra_xml.append(act)
        # elliptic friction cones with a high impratio keep a grasped block from slipping
        b.extra_xml.append('<option integrator="implicitfast" cone="elliptic" impratio="10"/>')

    def _finish(self, b: SceneBuilder):
        # both see the whole block area (|x|, |y| < 0.25) and the arm's lower 25 cm at 64x64
        target = [0.0, 0.0, 0.07]
        b.camera("front", target, 1.0, -112, 40, jitter_deg=3.0, fovy=42)
        b.camera("side", target, 1.0, 3, 30, jitter_deg=3.0, fovy=42)
        b.params["task"] = self.task
        return b.build()

    # ---- agent ----
    def make_agent(self, model, data, scene, rng, policy: str, fps: float):
        parse_policy(policy)  # an unknown policy fails before the agent is built
        return GantryAgent(model, data, scene, rng, policy, fps)

    def state_names(self, k_max: int) -> list[str]:
        return list(STATE_NAMES)

    def observation_state(self, model, data, objects, agent) -> np.ndarray:
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        R = data.site_xmat[site].reshape(3, 3)
        q = sum(data.qpos[model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, f"finger_{s}")]]
                for s in ("left", "right"))
        opening = float(np.clip(q / (2 * FINGER_TRAVEL), 0.0, 1.0))
        return np.concatenate([data.site_xpos[site], rot6d(R), [opening]])

    # ---- language helpers ----
    @staticmethod
    def _obj(scene, name):
        return next(o for o in scene.objects if o["name"] == name)

    def scene_sentence(self, scene):
        blocks = [o for o in scene.objects if o["kind"] == "dynamic"]
        goal = [o for o in scene.objects if o.get("noun") == "goal"]
        things = [display(o) for o in blocks + goal]
        listing = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
        return f"A gantry robot arm with a two-finger gripper works over a table with {listing}."


class _GoalTask(TabletopWorld):
    """Shared by push and pick_place: one block, one goal region drawn on the table."""

    lifted_required = False

    def build(self, rng):
        b = self._begin(rng)
        radius = rng.uniform(0.06, 0.075)
        block_xy = rng.uniform(-0.18, 0.18, 2)
        for _ in range(500):
            goal_xy = rng.uniform(-0.2, 0.2, 2)
            d = np.linalg.norm(goal_xy - block_xy)
            if radius + 0.085 <= d <= 0.32:
                break
        else:
            raise RuntimeError("could not place the goal")
        goal = self._goal(b, rng, goal_xy, radius)
        self._robot(b, rng)
        block = self._block(b, rng, block_xy)
        b.params.update(block=block["name"], block_half=block["size"], goal=goal["name"],
                        goal_xy=[float(v) for v in goal_xy], goal_radius=float(radius))
        return self._finish(b)

    def outcome(self, scene, states, contacts, agent, fps):
        p = scene.params
        blk = self._obj(scene, p["block"])
        s = states[:, blk["id"] - 1]
        dist = float(np.linalg.norm(s[-1, :2] - np.array(p["goal_xy"])))
        in_goal = dist < p["goal_radius"]
        on_table = bool(lowest_point(s[-1], p["block_half"]) < 0.01)  # resting on the table, not held up
        upright = tilt_deg(s[-1, 3:7]) < 20
        lift = float(np.max([lowest_point(st, p["block_half"]) for st in s]))
        lifted = lift > 0.03
        success = bool(in_goal and on_table and (lifted or not self.lifted_required))
        return dict(success=success, in_goal=bool(in_goal), distance_to_goal_m=dist,
                    initial_distance_m=float(np.linalg.norm(s[0, :2] - np.array(p["goal_xy"]))),
                    goal_radius_m=float(p["goal_radius"]), on_table=on_table, upright=bool(upright),
                    lifted=bool(lifted), max_lift_m=lift)  # lift: the block's lowest point above the table

    def _names(self, scene):
        p = scene.params
        return display(self._obj(scene, p["block"])), display(self._obj(scene, p["goal"]))


class Push(_GoalTask):
    name = "push"
    task = "push"
    description = "A robot arm pushes a block into a goal region drawn on the table."

    def task_text(self, scene):
        blk, goal = self._names(scene)
        return f"push {blk} into {goal}"

    def outcome_facts(self, scene, outcome):
        blk, goal = self._names(scene)
        ok = outcome["success"]
        s = (f"The robot pushes {blk} into {goal}." if ok else
             f"The robot does not get {blk} into {goal}; it ends {outcome['distance_to_goal_m']:.2f} m from the goal's centre.")
        return [(dict(type="success", question="Did the robot succeed?"), yes_no(ok), s),
                (dict(type="in_goal", question=f"Is {blk} inside {goal} at the end?"), yes_no(outcome["in_goal"]), None)]


class PickPlace(_GoalTask):
    name = "pick_place"
    task = "pick_place"
    description = "A robot arm picks up a block and places it in a goal region drawn on the table."
    lifted_required = True

    def task_text(self, scene):
        blk, goal = self._names(scene)
        return f"pick up {blk} and place it in {goal}"

    def outcome_facts(self, scene, outcome):
        blk, goal = self._names(scene)
        ok = outcome["success"]
        if ok:
            s = f"The robot picks up {blk} and places it in {goal}."
        elif not outcome["lifted"]:
            s = f"The robot never lifts {blk}."
        else:
            s = f"The robot lifts {blk} but does not leave it in {goal}; it ends {outcome['distance_to_goal_m']:.2f} m from the goal's centre."
        return [(dict(type="success", question="Did the robot succeed?"), yes_no(ok), s),
                (dict(type="in_goal", question=f"Is {blk} inside {goal} at the end?"), yes_no(outcome["in_goal"]), None),
                (dict(type="lifted", question=f"Does the robot lift {blk}?"), yes_no(outcome["lifted"]), None)]


class Stack(TabletopWorld):
    name = "stack"
    task = "stack"
    description = "A robot arm stacks one block on top of another."

    def build(self, rng):
        b = self._begin(rng)
        top_xy = rng.uniform(-0.18, 0.18, 2)
        for _ in range(500):
            base_xy = rng.uniform(-0.2, 0.2, 2)
            if 0.2 <= np.linalg.norm(base_xy - top_xy) <= 0.34:
                break
        else:
            raise RuntimeError("could not place the blocks")
        self._robot(b, rng)
        top = self._block(b, rng, top_xy)
        base = self._block(b, rng, base_xy)
        b.params.update(block=top["name"], block_half=top["size"], base=base["name"], base_half=base["size"])
        return self._finish(b)

    def outcome(self, scene, states, contacts, agent, fps):
        p = scene.params
        top, base = self._obj(scene, p["block"]), self._obj(scene, p["base"])
        st, sb = states[-1, top["id"] - 1], states[-1, base["id"] - 1]
        ht, hb = np.array(p["block_half"]), np.array(p["base_half"])
        # the top block's centre, in the base block's frame
        Rb = np.zeros(9)
        mujoco.mju_quat2Mat(Rb, sb[3:7])
        rel = Rb.reshape(3, 3).T @ (st[:3] - sb[:3])
        over = bool(abs(rel[0]) < hb[0] and abs(rel[1]) < hb[1])
        z_err = float(rel[2] - (hb[2] + ht[2]))
        resting = abs(z_err) < 0.012
        upright = tilt_deg(st[3:7]) < 20 and tilt_deg(sb[3:7]) < 20
        base_on_table = bool(abs(sb[2] - hb[2]) < 0.01)
        success = bool(over and resting and upright and base_on_table)
        return dict(success=success, on_top=bool(over and resting), horizontal_offset_m=float(np.linalg.norm(rel[:2])),
                    height_error_m=z_err, upright=bool(upright), base_on_table=base_on_table)

    def _names(self, scene):
        p = scene.params
        return display(self._obj(scene, p["block"])), display(self._obj(scene, p["base"]))

    def task_text(self, scene):
        top, base = self._names(scene)
        return f"stack {top} on top of {base}"

    def outcome_facts(self, scene, outcome):
        top, base = self._names(scene)
        ok = outcome["success"]
        s = (f"The robot stacks {top} on top of {base}." if ok else
             f"The robot does not get {top} to rest on top of {base}.")
        return [(dict(type="success", question="Did the robot succeed?"), yes_no(ok), s),
                (dict(type="on_top", question=f"Is {top} on top of {base} at the end?"), yes_no(outcome["on_top"]), None)]


TABLETOP_WORLDS = (Push, PickPlace, Stack)
