"""One simulated episode in memory: every stream a world records, aligned in time.

Legend: T frames, H height, W width, K objects, A action dims, S state dims,
N audio samples.

An `Episode` is what a world produces and what the LeRobot writer consumes; the
staging files of a generation run are episodes saved with `save` / `load`
(npz + JSON, no pickle).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

# Per-object state layout in `objects` (world frame, SI units).
OBJECT_STATE = ("x", "y", "z", "qw", "qx", "qy", "qz", "vx", "vy", "vz", "wx", "wy", "wz")


@dataclass
class Episode:
    scenario: str
    seed: int
    fps: float
    cameras: list[str]
    frames: dict[str, np.ndarray]  # camera -> uint8 [T, H, W, 3]
    masks: dict[str, np.ndarray]  # camera -> uint8 [T, H, W], object id per pixel (0 = empty)
    state: np.ndarray  # float32 [T, S]  observation.state (layout per scenario, in info["state_names"])
    objects: np.ndarray  # float64 [T, K, 13] see OBJECT_STATE; K slots >= len(objects_info), slot i = object id i+1, unused slots zero
    action: np.ndarray  # float32 [T, A]  action applied after frame t (layout in info["action_names"])
    intrinsics: dict[str, np.ndarray]  # camera -> float64 [T, 3, 3] pinhole K in pixels
    extrinsics: dict[str, np.ndarray]  # camera -> float64 [T, 4, 4] world->camera, OpenCV axes (x right, y down, z forward)
    audio: np.ndarray  # float32 [N] mono in [-1, 1], N = round(T / fps * sample_rate)
    sample_rate: int
    contacts: list[dict]  # impact events: time, frame, a, b (object ids), impulse, speed, position, resting (placed touching, not yet parted: settling, not a collision)
    task: str  # LeRobot task string: the instruction (tabletop) or the scene description
    caption: str
    qa: list[dict]  # {"type", "question", "answer"} answered from ground truth
    objects_info: list[dict]  # per object: id, name, kind, shape, colour, rgb, size, mass, friction
    info: dict = field(default_factory=dict)  # sim metadata: parameters, success, plausibility label

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    # ---- staging files: arrays in an npz, everything else in JSON (never pickle) ----
    _ARRAYS = ("state", "objects", "action", "audio")
    _PER_CAMERA = ("frames", "masks", "intrinsics", "extrinsics")

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a reader sees the old file or the whole new one, never half."""
        path = Path(path)
        arrays = {k: getattr(self, k) for k in self._ARRAYS}
        for k in self._PER_CAMERA:
            for cam, a in getattr(self, k).items():
                arrays[f"{k}/{cam}"] = a
        meta = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in self._ARRAYS and f.name not in self._PER_CAMERA
        }
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            # np.savez_compressed's layout at zlib level 1: twice as fast as its level 6 and still ~35x smaller than raw
            # frames (a staging file lives only until the dataset is packed)
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                for name, a in arrays.items():
                    with z.open(name + ".npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Episode":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(z["meta.json"].tobytes().decode())
                kw = {k: z[k] for k in cls._ARRAYS}
                for k in cls._PER_CAMERA:
                    kw[k] = {cam: z[f"{k}/{cam}"] for cam in meta["cameras"]}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise ValueError(f"corrupt or truncated episode file {path}: {e}") from e
        return cls(**meta, **kw)
