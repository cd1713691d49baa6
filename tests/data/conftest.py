"""Synthetic episodes for the data tests: small, random, every stream filled.

Legend: T frames, H height, W width, K objects, S state dims, A action dims.
Two cameras of different sizes (front 32x48, top 40x40), T in [10, 20],
K = 3 coloured squares moving over a grey floor (masks = their ids), random
floats elsewhere, audio at 800 Hz.
"""

from __future__ import annotations

import numpy as np
import pytest

from kinema.data.episode import OBJECT_STATE, Episode

CAMERAS = {"front": (32, 48), "top": (40, 40)}
FPS = 16.0
SAMPLE_RATE = 800
S, A, K = 5, 3, 3
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230)]


def squares_video(rng: np.random.Generator, T: int, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """K coloured squares moving linearly -> frames uint8 [T, H, W, 3], masks uint8 [T, H, W]."""
    frames = np.full((T, H, W, 3), 90, np.uint8)
    frames += rng.integers(0, 12, (1, H, W, 3), dtype=np.uint8)  # static floor texture
    masks = np.zeros((T, H, W), np.uint8)
    for k in range(K):
        size = int(rng.integers(5, 10))
        y0, x0 = rng.uniform(0, [H - size, W - size])
        vy, vx = rng.uniform(-1.5, 1.5, 2)
        for t in range(T):
            y = int(np.clip(y0 + vy * t, 0, H - size))
            x = int(np.clip(x0 + vx * t, 0, W - size))
            frames[t, y : y + size, x : x + size] = COLOURS[k]
            masks[t, y : y + size, x : x + size] = k + 1
    return frames, masks


def make_episode(
    seed: int, T: int | None = None, *, task: str | None = None, scenario: str = "tabletop", fps: float = FPS
) -> Episode:
    rng = np.random.default_rng(seed)
    T = int(rng.integers(10, 21)) if T is None else T
    frames, masks, intr, extr = {}, {}, {}, {}
    for cam, (H, W) in CAMERAS.items():
        frames[cam], masks[cam] = squares_video(rng, T, H, W)
        intr[cam] = np.tile(np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]]), (T, 1, 1)) + rng.normal(0, 1e-3, (T, 3, 3))
        extr[cam] = rng.normal(size=(T, 4, 4))
    names = ["red_cube", "green_ball", "blue_box"]
    return Episode(
        scenario=scenario,
        seed=seed,
        fps=fps,
        cameras=list(CAMERAS),
        frames=frames,
        masks=masks,
        state=rng.normal(size=(T, S)).astype(np.float32),
        objects=rng.normal(size=(T, K, len(OBJECT_STATE))),
        action=rng.normal(size=(T, A)).astype(np.float32),
        intrinsics=intr,
        extrinsics=extr,
        audio=rng.uniform(-1, 1, round(T / fps * SAMPLE_RATE)).astype(np.float32),
        sample_rate=SAMPLE_RATE,
        contacts=[
            {"time": float(t) / fps, "frame": int(t), "a": 1, "b": 2, "impulse": float(rng.random()),
             "speed": 0.1 * float(rng.random()), "position": rng.normal(size=3).tolist()}
            for t in sorted(rng.choice(T, 2, replace=False).tolist())
        ],
        task=task if task is not None else f"push the {names[seed % K]}",
        caption=f"Three objects slide on a table (seed {seed}).",
        qa=[
            {"type": "count", "question": "How many objects?", "answer": "3"},
            {"type": "speed", "question": "Fastest?", "answer": names[seed % K], "value": float(rng.random())},
        ],
        objects_info=[
            {"id": k + 1, "name": names[k], "kind": "box", "shape": "cube", "colour": "c", "rgb": list(COLOURS[k]),
             "size": [0.05, 0.05, 0.05], "mass": float(rng.uniform(0.1, 1)), "friction": 0.5}
            for k in range(K)
        ],
        info={
            "robot_type": "kinema_arm",
            "state_names": [f"joint{i}" for i in range(S)],
            "action_names": [f"dq{i}" for i in range(A)],
            "success": bool(seed % 2),
            "params": {"gravity": -9.81, "dt": 1 / 480},
        },
    )


def assert_episode_equal(got: Episode, want: Episode) -> None:
    """Every field equal (arrays exactly, with dtype)."""
    for name in ("scenario", "seed", "fps", "cameras", "sample_rate", "contacts", "task", "caption", "qa", "objects_info", "info"):
        assert getattr(got, name) == getattr(want, name), name
    for name in ("state", "objects", "action", "audio"):
        g, w = getattr(got, name), getattr(want, name)
        assert g.dtype == w.dtype and g.shape == w.shape and np.array_equal(g, w), name
    for name in ("frames", "masks", "intrinsics", "extrinsics"):
        g, w = getattr(got, name), getattr(want, name)
        assert list(g) == list(w), name
        for cam in w:
            assert g[cam].dtype == w[cam].dtype and g[cam].shape == w[cam].shape, (name, cam)
            assert np.array_equal(g[cam], w[cam]), (name, cam)


@pytest.fixture(scope="session")
def episodes() -> list[Episode]:
    """5 episodes, 2 tasks."""
    return [make_episode(s, task="push the red_cube" if s % 2 else "stack the boxes") for s in range(5)]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, episodes):
    """The 5 episodes written with 2 episodes per file (3 data files). Read-only: copy it before damaging it."""
    from kinema.data.lerobot import write_dataset

    root = tmp_path_factory.mktemp("ds") / "tabletop"
    write_dataset(root, episodes, episodes_per_file=2, progress=False)
    return root
