"""Camera motion: a static scene filmed by a camera moving along a random smooth path.

Legend: T frames.

Action and observation.state (9-D) are the camera pose relative to the first
frame's camera: translation (3, metres, in frame-0 camera coordinates) then the
first two columns of the relative rotation (6D), OpenCV camera axes (x right,
y down, z forward). Frame 0 is therefore [0,0,0, 1,0,0, 0,1,0]. The absolute
intrinsics and world->camera extrinsics of every frame are recorded too.
"""

from __future__ import annotations

import numpy as np

from kinema.worlds.language import display
from kinema.worlds.physics import SHAPES, count_word, dynamic, half_height, listing, random_size
from kinema.worlds.scene import SceneBuilder, cross3, look_at_xyaxes, quat_from_axis_angle
from kinema.worlds.world import World

_CV_TO_MJ = np.diag([1.0, -1.0, -1.0])
POSE_NAMES = ("tx", "ty", "tz", "r11", "r21", "r31", "r12", "r22", "r32")


def pose9(T: np.ndarray) -> np.ndarray:
    """4x4 rigid transform -> translation 3 + rotation 6D (first two columns)."""
    return np.concatenate([T[:3, 3], T[:3, 0], T[:3, 1]])


class CameraPath:
    """Low-frequency random orbit around the scene: azimuth sweep, bobbing height and radius, drifting gaze."""

    def __init__(self, rng, duration):
        self.a0 = rng.uniform(0, 2 * np.pi)
        self.sweep = rng.uniform(0.4, 1.2) * (1 if rng.random() < 0.5 else -1)
        self.e0, self.r0 = rng.uniform(0.25, 0.6), rng.uniform(1.2, 1.7)
        self.freq = rng.uniform(0.2, 0.6, 4) / duration * 2
        self.phase = rng.uniform(0, 2 * np.pi, 4)
        self.duration = duration

    def camera_to_world(self, t: float) -> np.ndarray:
        s = t / self.duration
        w = np.sin(2 * np.pi * self.freq * t + self.phase)
        az = self.a0 + self.sweep * s + 0.15 * w[0]
        el = self.e0 + 0.12 * w[1]
        r = self.r0 * (1 + 0.12 * w[2])
        target = np.array([0.12 * w[3], 0.12 * np.cos(self.phase[3] + 2 * np.pi * self.freq[3] * t), 0.05])
        pos = target + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        xy = np.asarray(look_at_xyaxes(pos, target)).reshape(2, 3)
        R_mj = np.stack([xy[0], xy[1], cross3(xy[0], xy[1])], axis=1)  # columns: camera axes in world
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R_mj @ _CV_TO_MJ, pos  # OpenCV camera axes
        return T


class CameraAgent:
    """Moves the camera before each frame; its action is the pose it moved to."""

    def __init__(self, model, data, path: CameraPath, fps: float):
        self.model, self.data, self.path, self.fps = model, data, path, fps
        self.cam = 0
        self.T0_inv = np.linalg.inv(path.camera_to_world(0.0))
        self.pose = pose9(np.eye(4))

    def before_frame(self, t: int):
        T = self.path.camera_to_world(t / self.fps)
        # a camera fixed to the world is drawn from data.cam_xpos / cam_xmat
        self.data.cam_xpos[self.cam] = T[:3, 3]
        self.data.cam_xmat[self.cam] = (T[:3, :3] @ _CV_TO_MJ).reshape(-1)
        self.pose = pose9(self.T0_inv @ T)

    def act(self, t: int) -> np.ndarray:
        return self.pose.copy()


class CameraMotion(World):
    name = "camera_motion"
    family = "camera"
    description = "A camera moves around a static scene of objects on a checkered floor."
    robot_type = "camera"
    action_names = POSE_NAMES
    max_objects = 8

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor(checker=True)
        n = int(rng.integers(3, 7))
        placed: list[np.ndarray] = []
        while len(placed) < n:
            xy = rng.uniform(-0.45, 0.45, 2)
            if all(np.linalg.norm(xy - p) > 0.25 for p in placed):
                placed.append(xy)
        for xy in placed:
            shape = SHAPES[int(rng.integers(3))]
            size = random_size(rng, shape)
            yaw = quat_from_axis_angle([0, 0, 1], rng.uniform(0, np.pi))
            b.free_object(shape, size, [xy[0], xy[1], half_height(shape, size) + 0.0002], yaw)
        b.camera("moving", [0, 0, 0], 1.5, 0, 30, jitter_deg=0)  # pose replaced every frame
        b.params["path_seed_note"] = "camera path drawn from the episode seed"
        return b.build()

    def make_agent(self, model, data, scene, rng, policy, fps):
        if policy not in ("expert", "random"):
            raise ValueError(f"unknown policy {policy!r} for camera_motion; expected 'random' (alias 'expert')")
        return CameraAgent(model, data, CameraPath(rng, self.frames / fps), fps)

    def state_names(self, k_max):
        return list(POSE_NAMES)

    def observation_state(self, model, data, objects, agent):
        return agent.pose

    def scene_sentence(self, scene):
        objs = dynamic(scene)
        return f"A camera circles {count_word(len(objs))} objects resting on a checkered floor: {listing(objs)}."

    def task_text(self, scene):
        return "Move the camera smoothly around the objects on the floor."
