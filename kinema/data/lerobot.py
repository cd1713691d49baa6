"""Write episodes in the LeRobot v3.0 on-disk layout, and validate such a folder.

Legend: E episodes, T frames of one episode, F frames of one file, H height,
W width, K objects, S state dims, A action dims, N audio samples.

Layout under `root` (NNN = chunk index, YYY = file index; a file holds
`episodes_per_file` consecutive episodes, the file index rolls over into the
next chunk every `chunks_size` files; data, videos, masks, audio and episode
metadata of the same episodes share one (chunk, file) pair):

  meta/info.json            LeRobot v3.0 info + a "kinema" block; written LAST,
                            so a folder without it is an unfinished dataset
  meta/stats.json           per feature min/max/mean/std/count (images: per
                            channel over [0, 1], shape [3, 1, 1])
  meta/tasks.parquet        task string (pandas index "task") <-> task_index
  meta/episodes/chunk-NNN/file-YYY.parquet
                            one row per episode: LeRobot v3 columns, per-episode
                            stats/<feature>/<stat>, and kinema/* columns (JSON)
  data/chunk-NNN/file-YYY.parquet
                            one row per frame [F]: observation.state [S],
                            action [A], observation.objects [K*13] (float64),
                            observation.camera.<cam>.intrinsics [9] /
                            .extrinsics [16] (float64, row-major), timestamp,
                            frame_index, episode_index, index, task_index;
                            one row group per episode
  videos/observation.images.<cam>/chunk-NNN/file-YYY.mp4
                            the frames [F, H, W, 3] of the same episodes,
                            concatenated, a keyframe at each episode start
  masks/chunk-NNN/file-YYY.parquet   (kinema) rows aligned with the data file
                            of the same chunk/file:
                            index, episode_index, frame_index and one
                            fixed_size_binary[H*W] column observation.masks.<cam>
                            (uint8 object ids, row-major; 0 = empty); zstd
  audio/chunk-NNN/file-YYY.parquet   (kinema) one row per episode:
                            episode_index, sample_rate, samples list<float32> [N]

Every file is written under a temporary name and `os.replace`d into place, so
a killed writer leaves whole files or none, and no meta/info.json.
"""

from __future__ import annotations

import json
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from kinema.data.episode import OBJECT_STATE, Episode
from kinema.data.video_io import CODECS, VideoWriter, probe_video

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
MASKS_PATH = "masks/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
AUDIO_PATH = "audio/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
# LeRobot's default size limits; kinema rolls files over by episode count instead.
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
# Per-episode metadata that LeRobot has no column for, stored as JSON strings.
JSON_COLUMNS = ("caption", "qa", "objects", "contacts", "info", "seed", "scenario")
# The keys of info.json's "kinema" block (write_dataset's extra_info may add others).
KINEMA_INFO_KEYS = (
    "scenario", "cameras", "fps", "sample_rate", "codec", "episodes_per_file", "episodes_path", "masks_path",
    "audio_path", "masks_features", "audio_features", "object_state", "num_objects", "objects_layout",
    "camera_layout", "episode_json_columns",
)

_ARROW_TYPES = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "uint8": pa.uint8(),
    "bool": pa.bool_(),
    "string": pa.string(),
}


class DatasetError(ValueError):
    """A dataset folder that is unfinished, inconsistent or damaged; the message names the file."""


# ---------------------------------------------------------------- small helpers


def image_key(cam: str) -> str:
    return f"observation.images.{cam}"


def mask_key(cam: str) -> str:
    return f"observation.masks.{cam}"


def intrinsics_key(cam: str) -> str:
    return f"observation.camera.{cam}.intrinsics"


def extrinsics_key(cam: str) -> str:
    return f"observation.camera.{cam}.extrinsics"


def chunk_file(slot: int, chunks_size: int) -> tuple[int, int]:
    """The n-th file of a dataset -> (chunk_index, file_index)."""
    return slot // chunks_size, slot % chunks_size


def to_json(obj) -> str:
    """JSON for metadata; numpy scalars/arrays become Python numbers/lists."""

    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    return json.dumps(obj, default=default)


def kinema_columns(ep: Episode) -> dict:
    """An episode's kinema/* metadata columns (JSON strings), as its row in meta/episodes holds them."""
    return {
        "kinema/caption": to_json(ep.caption),
        "kinema/qa": to_json(ep.qa),
        "kinema/objects": to_json(ep.objects_info),
        "kinema/contacts": to_json(ep.contacts),
        "kinema/info": to_json(ep.info),
        "kinema/seed": to_json(ep.seed),
        "kinema/scenario": to_json(ep.scenario),
    }


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path to write; on success it is fsynced and
    moved onto `path`, on an exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        _publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=4) + "\n")


def arrow_type(feature: dict) -> pa.DataType:
    """A non-video feature {dtype, shape} -> its parquet column type: a scalar for
    shape [1], a fixed-size list for shape [n]."""
    base = _ARROW_TYPES[feature["dtype"]]
    shape = list(feature["shape"])
    if shape == [1]:
        return base
    if len(shape) != 1:
        raise ValueError(f"only 1-D features are stored in parquet, got shape {shape}")
    return pa.list_(base, shape[0])


def data_schema(features: dict) -> pa.Schema:
    return pa.schema([(k, arrow_type(f)) for k, f in features.items() if f["dtype"] not in ("video", "image")])


def masks_schema(kinema: dict) -> pa.Schema:
    fields = [("index", pa.int64()), ("episode_index", pa.int64()), ("frame_index", pa.int64())]
    for key, f in kinema["masks_features"].items():
        fields.append((key, pa.binary(f["shape"][0] * f["shape"][1])))
    return pa.schema(fields)


AUDIO_SCHEMA = pa.schema([("episode_index", pa.int64()), ("sample_rate", pa.int64()), ("samples", pa.list_(pa.float32()))])


def column_array(a: np.ndarray, type_: pa.DataType) -> pa.Array:
    """numpy [T, D] -> an arrow column of T rows of `type_` (a scalar type when D = 1)."""
    if pa.types.is_fixed_size_list(type_):
        flat = pa.array(np.ascontiguousarray(a).reshape(-1), type_.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, type_.list_size)
    return pa.array(np.asarray(a).reshape(-1), type_)


# ---------------------------------------------------------------- episode checks


@dataclass
class _Spec:
    """What every episode of one dataset shares (taken from the first one)."""

    scenario: str
    robot_type: str
    fps: float
    cameras: list
    sizes: dict  # camera -> (H, W)
    sample_rate: int
    state_names: list
    action_names: list
    num_objects: int

    @classmethod
    def of(cls, ep: Episode) -> "_Spec":
        S, A = _dim(ep.state, 1), _dim(ep.action, 1)
        return cls(
            scenario=ep.scenario,
            robot_type=str(ep.info.get("robot_type", ep.scenario)),
            fps=float(ep.fps),
            cameras=list(ep.cameras),
            sizes={c: tuple(np.shape(ep.frames.get(c, np.zeros((0, 0, 0, 3))))[1:3]) for c in ep.cameras},
            sample_rate=int(ep.sample_rate),
            state_names=list(ep.info.get("state_names") or [f"state_{i}" for i in range(S)]),
            action_names=list(ep.info.get("action_names") or [f"action_{i}" for i in range(A)]),
            num_objects=_dim(ep.objects, 1),
        )


def _dim(a, axis: int) -> int:
    shape = np.shape(a)
    return int(shape[axis]) if len(shape) > axis else -1


def _array(a, dtype, shape: tuple, what: str) -> np.ndarray:
    """Check a stream's shape (None = any) and dtype; cast only where no precision is lost."""
    a = np.asarray(a)
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = ", ".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"{what}: expected shape [{want}], got {list(a.shape)}")
    if a.dtype != dtype:
        if not np.can_cast(a.dtype, dtype, "safe"):
            raise ValueError(f"{what}: expected dtype {np.dtype(dtype).name}, got {a.dtype.name}")
        a = a.astype(dtype)
    return a


def check_episode(ep: Episode, spec: "_Spec", label: str) -> dict:
    """Check one episode against the dataset's spec -> its arrays, in their
    on-disk dtypes. Errors name the episode (`label`) and the stream."""

    def fail(msg):
        raise ValueError(f"{label}: {msg}")

    if ep.scenario != spec.scenario:
        fail(f"scenario {ep.scenario!r} differs from the dataset's {spec.scenario!r}")
    if float(ep.fps) != spec.fps:
        fail(f"fps {ep.fps} differs from the dataset's {spec.fps}")
    if list(ep.cameras) != spec.cameras:
        fail(f"cameras {list(ep.cameras)} differ from the dataset's {spec.cameras}")
    if int(ep.sample_rate) != spec.sample_rate:
        fail(f"sample_rate {ep.sample_rate} differs from the dataset's {spec.sample_rate}")
    if not spec.cameras:
        fail("has no cameras")
    T = _dim(ep.state, 0)
    if T < 1:
        fail("has no frames")
    S, A, K = len(spec.state_names), len(spec.action_names), spec.num_objects
    out = {
        "state": _array(ep.state, np.float32, (T, S), f"{label} state"),
        "action": _array(ep.action, np.float32, (T, A), f"{label} action"),
        "objects": _array(ep.objects, np.float64, (T, K, len(OBJECT_STATE)), f"{label} objects"),
        "audio": _array(ep.audio, np.float32, (None,), f"{label} audio"),
    }
    if len(ep.objects_info) > K:
        fail(f"objects_info lists {len(ep.objects_info)} objects but objects holds only {K} slots")
    n_audio = round(T / spec.fps * spec.sample_rate)
    if len(out["audio"]) != n_audio:
        fail(f"audio has {len(out['audio'])} samples, expected round(T / fps * sample_rate) = {n_audio}")
    for key, names in (("state_names", spec.state_names), ("action_names", spec.action_names)):
        if key in ep.info and list(ep.info[key]) != names:
            fail(f"info[{key!r}] differs from the dataset's {names}")
    for cam in spec.cameras:
        H, W = spec.sizes[cam]
        for name in ("frames", "masks", "intrinsics", "extrinsics"):
            if cam not in getattr(ep, name):
                fail(f"{name} has no camera {cam!r}")
        out[f"frames/{cam}"] = _array(ep.frames[cam], np.uint8, (T, H, W, 3), f"{label} frames[{cam!r}]")
        out[f"masks/{cam}"] = _array(ep.masks[cam], np.uint8, (T, H, W), f"{label} masks[{cam!r}]")
        out[f"intrinsics/{cam}"] = _array(ep.intrinsics[cam], np.float64, (T, 3, 3), f"{label} intrinsics[{cam!r}]")
        out[f"extrinsics/{cam}"] = _array(ep.extrinsics[cam], np.float64, (T, 4, 4), f"{label} extrinsics[{cam!r}]")
    return out


# ---------------------------------------------------------------- features and stats


def make_features(spec: _Spec, codec: str, object_names: list[str]) -> dict:
    """The LeRobot `features` block of info.json."""
    preset = CODECS[codec]
    fps = _json_fps(spec.fps)
    feats: dict = {}
    for cam in spec.cameras:
        H, W = spec.sizes[cam]
        feats[image_key(cam)] = {
            "dtype": "video",
            "shape": [H, W, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": H,
                "video.width": W,
                "video.codec": "h264",
                "video.pix_fmt": preset["pix_fmt"],
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
                "kinema.codec_preset": codec,
            },
        }
    # A stream of width 0 (e.g. no actions in a passive scene) gets no feature
    # and no column (arrow has no zero-size lists); it reads back as [T, 0].
    if spec.state_names:
        feats["observation.state"] = {"dtype": "float32", "shape": [len(spec.state_names)], "names": spec.state_names}
    if spec.action_names:
        feats["action"] = {"dtype": "float32", "shape": [len(spec.action_names)], "names": spec.action_names}
    if spec.num_objects:
        feats["observation.objects"] = {
            "dtype": "float64",
            "shape": [spec.num_objects * len(OBJECT_STATE)],
            "names": [f"{o}.{f}" for o in object_names for f in OBJECT_STATE],
        }
    for cam in spec.cameras:
        k_names = [f"k{r}{c}" for r in range(3) for c in range(3)]
        m_names = [f"m{r}{c}" for r in range(4) for c in range(4)]
        feats[intrinsics_key(cam)] = {"dtype": "float64", "shape": [9], "names": k_names}
        feats[extrinsics_key(cam)] = {"dtype": "float64", "shape": [16], "names": m_names}
    feats["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        feats[key] = {"dtype": "int64", "shape": [1], "names": None}
    return feats


def _json_fps(fps: float):
    """LeRobot stores an integer fps; keep a float only when it is fractional."""
    return int(fps) if float(fps).is_integer() else float(fps)


def _numeric_columns(arrays: dict, spec: _Spec, ep_index: int, from_index: int, task_index: int) -> dict:
    """The non-video data columns of one episode as numpy [T, D] (D = 1 for scalars)."""
    T = len(arrays["state"])
    frame_index = np.arange(T, dtype=np.int64)
    cols = {
        "observation.state": arrays["state"],
        "action": arrays["action"],
        "observation.objects": arrays["objects"].reshape(T, -1),
    }
    for cam in spec.cameras:
        cols[intrinsics_key(cam)] = arrays[f"intrinsics/{cam}"].reshape(T, 9)
        cols[extrinsics_key(cam)] = arrays[f"extrinsics/{cam}"].reshape(T, 16)
    cols["timestamp"] = (frame_index / spec.fps).astype(np.float32)[:, None]
    cols["frame_index"] = frame_index[:, None]
    cols["episode_index"] = np.full((T, 1), ep_index, np.int64)
    cols["index"] = (from_index + frame_index)[:, None]
    cols["task_index"] = np.full((T, 1), task_index, np.int64)
    return cols


def _stats(x: np.ndarray) -> dict:
    """x [n, D] -> min, max, mean, std [D] (float64) and count [1]."""
    x = np.asarray(x, np.float64)
    return {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0), "count": np.array([len(x)])}


def _image_stats(frames: np.ndarray) -> dict:
    """frames uint8 [T, H, W, 3] -> per-channel stats over [0, 1], shape [3, 1, 1]; count = T."""
    # From each channel's histogram of the 256 uint8 values: exact, and 7x faster than numpy's mean and std over the
    # pixels (stats were a quarter of a physics world's generation time).
    x = frames.reshape(-1, 3)
    h = np.stack([np.bincount(x[:, c], minlength=256) for c in range(3)])
    v = np.arange(256, dtype=np.float64)
    n = h.sum(1)
    mean = h @ v / n
    seen = h > 0
    s = {"min": seen.argmax(1) / 255.0, "max": (255 - seen[:, ::-1].argmax(1)) / 255.0, "mean": mean / 255.0,
         "std": np.sqrt((h * (v - mean[:, None]) ** 2).sum(1) / n) / 255.0}
    out = {k: v.reshape(3, 1, 1) for k, v in s.items()}
    out["count"] = np.array([len(frames)])
    return out


def merge_stats(a: dict | None, b: dict) -> dict:
    """Pool the stats of two disjoint sets of samples of one feature (exact
    pooled mean and variance), so a dataset's stats build up one episode at a time."""
    if a is None:
        return {k: np.asarray(v) for k, v in b.items()}
    na, nb = float(a["count"][0]), float(b["count"][0])
    n = na + nb
    mean = (na * a["mean"] + nb * b["mean"]) / n
    var = (na * (a["std"] ** 2 + (a["mean"] - mean) ** 2) + nb * (b["std"] ** 2 + (b["mean"] - mean) ** 2)) / n
    return {
        "min": np.minimum(a["min"], b["min"]),
        "max": np.maximum(a["max"], b["max"]),
        "mean": mean,
        "std": np.sqrt(np.maximum(var, 0.0)),
        "count": np.array([int(n)]),
    }


def _stats_to_json(stats: dict) -> dict:
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


# ---------------------------------------------------------------- writer


class _FileWriter:
    """The files of one (chunk, file) slot: data, videos, masks, audio parquet,
    each under a temporary name until `close()` publishes them, followed by the
    episodes-meta file of the same slot."""

    def __init__(self, root: Path, spec: _Spec, slot: int, chunks_size: int, codec: str, schema, mschema):
        self.spec = spec
        self.chunk, self.file = chunk_file(slot, chunks_size)
        idx = {"chunk_index": self.chunk, "file_index": self.file}
        self.final = {
            "data": root / DATA_PATH.format(**idx),
            "masks": root / MASKS_PATH.format(**idx),
            "audio": root / AUDIO_PATH.format(**idx),
            "episodes": root / EPISODES_PATH.format(**idx),
        }
        self.tmp = {k: p.with_name(p.name + ".tmp") for k, p in self.final.items()}
        for p in self.final.values():
            p.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0  # frames written to this slot so far
        self.meta_rows: list[dict] = []
        self.videos: dict[str, VideoWriter] = {}
        self.parquet: dict[str, pq.ParquetWriter] = {}
        try:
            self.parquet["data"] = pq.ParquetWriter(self.tmp["data"], schema)
            self.parquet["masks"] = pq.ParquetWriter(self.tmp["masks"], mschema, compression="zstd")
            self.parquet["audio"] = pq.ParquetWriter(self.tmp["audio"], AUDIO_SCHEMA, compression="zstd")
            for cam in spec.cameras:
                H, W = spec.sizes[cam]
                path = root / VIDEO_PATH.format(video_key=image_key(cam), **idx)
                self.videos[cam] = VideoWriter(path, spec.fps, H, W, codec=codec)
        except BaseException:
            self.abort()
            raise

    def add(self, arrays: dict, ep: Episode, ep_index: int, from_index: int, task_index: int) -> tuple[dict, dict]:
        """Append one checked episode; returns its episodes-meta row and its stats."""
        spec, T = self.spec, len(arrays["state"])
        cols = _numeric_columns(arrays, spec, ep_index, from_index, task_index)
        schema = self.parquet["data"].schema
        self.parquet["data"].write_table(pa.table([column_array(cols[f.name], f.type) for f in schema], schema=schema))

        mcols = [pa.array(cols["index"][:, 0]), pa.array(cols["episode_index"][:, 0]), pa.array(cols["frame_index"][:, 0])]
        for cam in spec.cameras:
            H, W = spec.sizes[cam]
            m = np.ascontiguousarray(arrays[f"masks/{cam}"])
            mcols.append(pa.FixedSizeBinaryArray.from_buffers(pa.binary(H * W), T, [None, pa.py_buffer(m.tobytes())]))
        self.parquet["masks"].write_table(pa.Table.from_arrays(mcols, schema=self.parquet["masks"].schema))

        audio = arrays["audio"]
        samples = pa.ListArray.from_arrays(pa.array([0, len(audio)], pa.int32()), pa.array(audio, pa.float32()))
        audio_cols = [pa.array([ep_index], pa.int64()), pa.array([spec.sample_rate], pa.int64()), samples]
        self.parquet["audio"].write_table(pa.Table.from_arrays(audio_cols, schema=AUDIO_SCHEMA))

        from_ts = self.rows / spec.fps
        for cam in spec.cameras:
            self.videos[cam].write(arrays[f"frames/{cam}"], keyframe=True)

        stats = {image_key(c): _image_stats(arrays[f"frames/{c}"]) for c in spec.cameras}
        stats.update({f.name: _stats(cols[f.name]) for f in schema})
        row = {
            "episode_index": ep_index,
            "tasks": [ep.task],
            "length": T,
            "data/chunk_index": self.chunk,
            "data/file_index": self.file,
            "dataset_from_index": from_index,
            "dataset_to_index": from_index + T,
        }
        for cam in spec.cameras:
            key = image_key(cam)
            row[f"videos/{key}/chunk_index"] = self.chunk
            row[f"videos/{key}/file_index"] = self.file
            row[f"videos/{key}/from_timestamp"] = from_ts
            row[f"videos/{key}/to_timestamp"] = (self.rows + T) / spec.fps
        row["meta/episodes/chunk_index"] = self.chunk
        row["meta/episodes/file_index"] = self.file
        for feat, st in stats.items():
            for name, value in st.items():
                row[f"stats/{feat}/{name}"] = value.tolist() if name == "count" else np.asarray(value, np.float64).tolist()
        row.update(kinema_columns(ep))
        row.update({
            "kinema/masks/chunk_index": self.chunk,
            "kinema/masks/file_index": self.file,
            "kinema/audio/chunk_index": self.chunk,
            "kinema/audio/file_index": self.file,
        })
        self.meta_rows.append(row)
        self.rows += T
        return row, stats

    def close(self) -> None:
        """Publish every file of the slot; the episodes-meta file goes last."""
        try:
            for w in self.parquet.values():
                w.close()
            for v in self.videos.values():
                v.close()
            pq.write_table(pa.Table.from_pylist(self.meta_rows), self.tmp["episodes"])
            for key in ("data", "masks", "audio", "episodes"):
                _publish(self.tmp[key], self.final[key])
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop every temporary file of the slot."""
        for w in self.parquet.values():
            try:
                w.close()
            except Exception:
                pass
        for v in self.videos.values():
            v.abort()
        for p in self.tmp.values():
            p.unlink(missing_ok=True)


_STALE = re.compile(
    r"^(data|masks|audio|meta/episodes|videos/[^/]+)/chunk-\d+/file-\d+\.(parquet|mp4)(\.tmp)?$"  # slot files
    r"|^meta/(tasks\.parquet|stats\.json)(\.tmp)?$"
    r"|^meta/info\.json\.tmp$"
)


def _remove_stale(root: Path) -> None:
    """Delete what an unfinished earlier run left (only files named like ours)."""
    for sub in ("data", "videos", "masks", "audio", "meta"):
        base = root / sub
        if not base.is_dir():
            continue
        for p in base.rglob("*"):
            if p.is_file() and _STALE.match(p.relative_to(root).as_posix()):
                p.unlink()


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet as LeRobot v3 writes it with pandas: a `task_index`
    column indexed by the task strings (index name "task")."""
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(pandas_meta).encode()})
    table = pa.table([pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.string())], schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def write_dataset(
    root: str | os.PathLike,
    episodes: Iterable[Episode],
    *,
    episodes_per_file: int = 100,
    chunks_size: int = 1000,
    codec: str = "lossless",
    progress: bool = True,
    extra_info: dict | None = None,
) -> dict:
    """Write `episodes` (streamed: one in memory at a time) as a LeRobot v3.0
    dataset at `root`; returns the info.json dict. `extra_info` (JSON-able) is
    merged into its "kinema" block (e.g. the generation plan).

    All episodes must share scenario, cameras, fps, frame sizes, sample rate,
    state/action layout and object count; a mismatch raises ValueError naming
    the episode. Refuses a `root` that already holds a finished dataset; files
    an unfinished earlier run left there are replaced.
    """
    root = Path(root)
    if episodes_per_file < 1 or chunks_size < 1:
        raise ValueError(f"episodes_per_file and chunks_size must be >= 1, got {episodes_per_file}, {chunks_size}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec preset {codec!r}; choose one of {sorted(CODECS)}")
    extra_info = dict(extra_info or {})
    to_json(extra_info)  # fail now, not after writing everything
    clash = sorted(set(extra_info) & set(KINEMA_INFO_KEYS))
    if clash:
        raise ValueError(f"extra_info keys {clash} clash with kinema's own info.json keys")
    if (root / INFO_PATH).exists():
        raise FileExistsError(
            f"{root} already holds a finished dataset ({INFO_PATH} exists); write to a new folder or delete it first"
        )
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)

    spec: _Spec | None = None
    schema = mschema = None
    writer: _FileWriter | None = None
    tasks: dict[str, int] = {}
    dataset_stats: dict[str, dict] = {}  # feature -> stats pooled over the episodes so far
    object_names: list[str] | None = None
    names_agree = True
    n_eps = n_frames = 0
    total = len(episodes) if hasattr(episodes, "__len__") else None
    bar = tqdm(total=total, desc=f"writing {root.name}", unit="ep", disable=not progress)
    try:
        for ep in episodes:
            label = f"episode {n_eps} (scenario {getattr(ep, 'scenario', '?')!r}, seed {getattr(ep, 'seed', '?')})"
            if spec is None:
                spec = _Spec.of(ep)
                object_names = _object_names(ep, spec)
                feats = make_features(spec, codec, object_names)
                schema = data_schema(feats)
                mschema = masks_schema({"masks_features": _mask_features(spec)})
            arrays = check_episode(ep, spec, label)
            names_agree = names_agree and _object_names(ep, spec) == object_names
            if writer is None:
                writer = _FileWriter(root, spec, n_eps // episodes_per_file, chunks_size, codec, schema, mschema)
            task_index = tasks.setdefault(ep.task, len(tasks))
            _, stats = writer.add(arrays, ep, n_eps, n_frames, task_index)
            for feat, st in stats.items():
                dataset_stats[feat] = merge_stats(dataset_stats.get(feat), st)
            n_eps += 1
            n_frames += len(arrays["state"])
            if n_eps % episodes_per_file == 0:
                writer.close()
                writer = None
            bar.update(1)
        if writer is not None:
            writer.close()
            writer = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    if spec is None:
        raise ValueError(f"no episodes to write to {root}")

    if not names_agree:  # objects differ between episodes: name the slots instead
        object_names = [f"object{k}" for k in range(spec.num_objects)]
    features = make_features(spec, codec, object_names)
    _write_tasks(root / TASKS_PATH, list(tasks))
    write_json(root / STATS_PATH, {k: _stats_to_json(v) for k, v in dataset_stats.items()})
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": spec.robot_type,
        "total_episodes": n_eps,
        "total_frames": n_frames,
        "total_tasks": len(tasks),
        "chunks_size": chunks_size,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": _json_fps(spec.fps),
        "splits": {"train": f"0:{n_eps}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
        "kinema": {
            "scenario": spec.scenario,
            "cameras": spec.cameras,
            "fps": spec.fps,
            "sample_rate": spec.sample_rate,
            "codec": codec,
            "episodes_per_file": episodes_per_file,
            "episodes_path": EPISODES_PATH,
            "masks_path": MASKS_PATH,
            "audio_path": AUDIO_PATH,
            "masks_features": _mask_features(spec),
            "audio_features": {
                "samples": {"dtype": "float32", "shape": [None], "names": None,
                            "note": "mono in [-1, 1], N = round(length / fps * sample_rate), one row per episode"}
            },
            "object_state": list(OBJECT_STATE),
            "num_objects": spec.num_objects,
            "objects_layout": "observation.objects [K*13] = objects [K, 13] row-major, fields per object_state, "
                              "world frame, SI units",
            "camera_layout": "intrinsics [9] = K [3, 3] row-major (pixels); "
                             "extrinsics [16] = world->camera [4, 4] row-major, OpenCV axes",
            "episode_json_columns": [f"kinema/{c}" for c in JSON_COLUMNS],
        },
    }
    assert set(info["kinema"]) == set(KINEMA_INFO_KEYS)
    info["kinema"].update(json.loads(to_json(extra_info)))
    write_json(root / INFO_PATH, info)  # last: its presence marks a finished dataset
    return info


def _object_names(ep: Episode, spec: _Spec) -> list[str]:
    """Feature names of the K object slots: the objects' names when objects_info
    fills every slot, else "object<k>"."""
    names = [str(o.get("name", f"object{k}")) for k, o in enumerate(ep.objects_info)]
    if len(names) != spec.num_objects or len(set(names)) != len(names):
        return [f"object{k}" for k in range(spec.num_objects)]
    return names


def _mask_features(spec: _Spec) -> dict:
    return {
        mask_key(cam): {
            "dtype": "uint8",
            "shape": list(spec.sizes[cam]),
            "names": ["height", "width"],
            "storage": "fixed_size_binary[H*W], row-major object ids, 0 = empty",
        }
        for cam in spec.cameras
    }


# ---------------------------------------------------------------- reading meta (shared with the reader)


def load_info(root: str | os.PathLike) -> dict:
    root = Path(root)
    path = root / INFO_PATH
    if not root.is_dir():
        raise DatasetError(f"no dataset at {root}: the folder does not exist")
    if not path.is_file():
        raise DatasetError(
            f"unfinished dataset at {root}: {INFO_PATH} is missing (it is written last); "
            "rerun the generate command to finish it"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not readable JSON ({e})") from e
    required = ("codebase_version", "total_episodes", "total_frames", "total_tasks", "fps", "features",
                "data_path", "video_path", "chunks_size")
    for key in required:
        if key not in info:
            raise DatasetError(f"{path}: missing key {key!r}")
    if info["codebase_version"] != CODEBASE_VERSION:
        raise DatasetError(f"{path}: codebase_version {info['codebase_version']!r}, expected {CODEBASE_VERSION!r}")
    return info


def read_parquet(path: Path, columns=None) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path}: unreadable parquet (truncated or corrupt?): {e}") from e


def load_episodes_meta(root: Path, *, with_stats: bool = False) -> list[dict]:
    """All rows of meta/episodes/*/*.parquet, sorted by episode_index."""
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    rows: list[dict] = []
    for f in files:
        table = read_parquet(f)
        if not with_stats:
            table = table.select([c for c in table.column_names if not c.startswith("stats/")])
        rows.extend(table.to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    return rows


def load_tasks(root: Path) -> list[str]:
    """meta/tasks.parquet -> task strings ordered by task_index."""
    path = root / TASKS_PATH
    table = read_parquet(path)
    if "task_index" not in table.column_names:
        raise DatasetError(f"{path}: no task_index column")
    task_col = "task" if "task" in table.column_names else "__index_level_0__"
    if task_col not in table.column_names:
        raise DatasetError(f"{path}: no task column")
    pairs = sorted(zip(table.column("task_index").to_pylist(), table.column(task_col).to_pylist()))
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise DatasetError(f"{path}: task_index is not 0..{len(pairs) - 1}")
    return [t for _, t in pairs]


def slot_paths(root: Path, info: dict, chunk: int, file: int) -> dict:
    kin = info.get("kinema", {})
    idx = {"chunk_index": chunk, "file_index": file}
    return {
        "data": root / info["data_path"].format(**idx),
        "masks": root / kin.get("masks_path", MASKS_PATH).format(**idx),
        "audio": root / kin.get("audio_path", AUDIO_PATH).format(**idx),
        "episodes": root / kin.get("episodes_path", EPISODES_PATH).format(**idx),
    }


def video_keys(info: dict) -> list[str]:
    return [k for k, f in info["features"].items() if f["dtype"] == "video"]


# ---------------------------------------------------------------- validator


def validate_dataset(root: str | os.PathLike) -> dict:
    """Check a dataset folder against its meta/info.json; returns a summary dict.

    Checks that every implied file exists and nothing unexpected sits under
    data/, videos/, masks/, audio/ and meta/episodes/; parquet schemas match the
    features; totals, episode lengths, index contiguity, frame_index 0..T-1,
    timestamp = frame_index / fps; video frame counts and sizes; masks and audio
    rows. Raises DatasetError naming the file and what was wrong.
    """
    root = Path(root)
    info = load_info(root)
    info_path = root / INFO_PATH
    features, fps = info["features"], float(info.get("kinema", {}).get("fps", info["fps"]))
    kin = info.get("kinema", {})
    tasks = load_tasks(root)
    if len(tasks) != info["total_tasks"]:
        raise DatasetError(f"{info_path}: total_tasks is {info['total_tasks']} but {root / TASKS_PATH} lists {len(tasks)}")
    if not (root / STATS_PATH).is_file():
        raise DatasetError(f"{root / STATS_PATH}: missing file")
    try:
        stats = json.loads((root / STATS_PATH).read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{root / STATS_PATH}: not readable JSON ({e})") from e
    unknown = sorted(set(stats) - set(features))
    if unknown:
        raise DatasetError(f"{root / STATS_PATH}: stats for features {unknown} that info.json does not declare")

    episodes = load_episodes_meta(root)
    if [r["episode_index"] for r in episodes] != list(range(len(episodes))):
        raise DatasetError(f"{root / 'meta/episodes'}: episode_index is not 0..{len(episodes) - 1}")
    if len(episodes) != info["total_episodes"]:
        raise DatasetError(
            f"{info_path}: total_episodes is {info['total_episodes']} but meta/episodes holds {len(episodes)}"
        )
    total = sum(r["length"] for r in episodes)
    if total != info["total_frames"]:
        raise DatasetError(f"{info_path}: total_frames is {info['total_frames']} but the episode lengths sum to {total}")
    cursor = 0
    for r in episodes:
        if r["dataset_from_index"] != cursor or r["dataset_to_index"] != cursor + r["length"]:
            span = f"[{r['dataset_from_index']}, {r['dataset_to_index']})"
            raise DatasetError(
                f"{root / 'meta/episodes'}: episode {r['episode_index']} spans {span}, "
                f"expected [{cursor}, {cursor + r['length']})"
            )
        cursor += r["length"]

    expected: set[Path] = {  # every file the metadata implies
        root / EPISODES_PATH.format(chunk_index=r["meta/episodes/chunk_index"], file_index=r["meta/episodes/file_index"])
        for r in episodes
    }
    schema = data_schema(features)
    slots: dict[tuple, list[dict]] = {}
    for r in episodes:
        slots.setdefault((r["data/chunk_index"], r["data/file_index"]), []).append(r)
    for (chunk, file), eps in sorted(slots.items()):
        paths = slot_paths(root, info, chunk, file)
        for r in eps:  # masks and audio share the data file's slot
            for kind in ("masks", "audio"):
                if r.get(f"kinema/{kind}/chunk_index", chunk) != chunk or r.get(f"kinema/{kind}/file_index", file) != file:
                    raise DatasetError(
                        f"{paths['episodes']}: episode {r['episode_index']} puts its {kind} "
                        "outside its data file's chunk/file"
                    )
        expected.add(paths["data"])
        rows = _check_data_file(paths["data"], schema, eps, tasks, fps)
        if "masks_features" in kin:
            expected.add(paths["masks"])
            _check_masks_file(paths["masks"], masks_schema(kin), rows)
        if "audio_path" in kin:
            expected.add(paths["audio"])
            _check_audio_file(paths["audio"], eps, fps, int(kin["sample_rate"]))

    vkeys = video_keys(info)
    for key in vkeys:
        vslots: dict[tuple, list[dict]] = {}
        for r in episodes:
            vslots.setdefault((r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"]), []).append(r)
        for (chunk, file), eps in sorted(vslots.items()):
            path = root / info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
            expected.add(path)
            _check_video_file(path, features[key], eps, key, fps)

    found = set()
    for sub in ("data", "videos", "masks", "audio", "meta/episodes"):
        if (root / sub).is_dir():
            found |= {p for p in (root / sub).rglob("*") if p.is_file()}
    extra = sorted(found - expected)
    if extra:
        raise DatasetError(
            f"{extra[0]}: unexpected file, not implied by {INFO_PATH} and meta/episodes ({len(extra)} such files)"
        )
    return {
        "root": str(root),
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": len(tasks),
        "cameras": [k.removeprefix("observation.images.") for k in vkeys],
        "data_files": len(slots),
        "files_checked": len(expected) + 3,
        "fps": fps,
    }


def _check_data_file(path: Path, schema: pa.Schema, eps: list[dict], tasks: list[str], fps: float) -> pa.Table:
    table = read_parquet(path)
    got = {f.name: f.type for f in table.schema}
    want = {f.name: f.type for f in schema}
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise DatasetError(
            f"{path}: schema does not match info.json features (missing {missing}, unexpected {extra}, "
            + ", ".join(f"{k} is {got[k]} not {want[k]}" for k in wrong)
            + ")"
        )
    n = sum(r["length"] for r in eps)
    if table.num_rows != n:
        span = f"episodes {eps[0]['episode_index']}..{eps[-1]['episode_index']}"
        raise DatasetError(f"{path}: {table.num_rows} rows, expected {n} ({span})")
    col = {k: table.column(k).to_numpy() for k in ("index", "episode_index", "frame_index", "timestamp", "task_index")}
    start = 0
    for r in eps:
        T, e = r["length"], r["episode_index"]
        sl = slice(start, start + T)
        where = f"{path}: episode {e}"
        if not (col["episode_index"][sl] == e).all():
            raise DatasetError(f"{where}: rows {start}..{start + T - 1} do not all have episode_index {e}")
        if not (col["index"][sl] == np.arange(r["dataset_from_index"], r["dataset_to_index"])).all():
            raise DatasetError(f"{where}: index is not contiguous from {r['dataset_from_index']}")
        if not (col["frame_index"][sl] == np.arange(T)).all():
            raise DatasetError(f"{where}: frame_index is not 0..{T - 1}")
        if not np.allclose(col["timestamp"][sl], np.arange(T) / fps, rtol=0, atol=1e-4):
            raise DatasetError(f"{where}: timestamp is not frame_index / fps (fps {fps})")
        ti = col["task_index"][sl]
        if not (ti == ti[0]).all() or not 0 <= ti[0] < len(tasks) or tasks[ti[0]] not in r["tasks"]:
            raise DatasetError(f"{where}: task_index {sorted(set(ti.tolist()))} does not match its tasks {r['tasks']}")
        start += T
    return table


def _check_masks_file(path: Path, schema: pa.Schema, data: pa.Table) -> None:
    table = read_parquet(path)
    if table.schema.remove_metadata() != schema:
        got = table.schema.to_string(show_schema_metadata=False)
        raise DatasetError(f"{path}: schema {got} does not match the masks features {schema}")
    if table.num_rows != data.num_rows:
        raise DatasetError(f"{path}: {table.num_rows} rows, expected {data.num_rows} (the rows of its data file)")
    for key in ("index", "episode_index", "frame_index"):
        if not table.column(key).equals(data.column(key)):
            raise DatasetError(f"{path}: column {key} is not aligned with the data file")


def _check_audio_file(path: Path, eps: list[dict], fps: float, sample_rate: int) -> None:
    table = read_parquet(path)
    if table.schema.remove_metadata() != AUDIO_SCHEMA:
        raise DatasetError(f"{path}: schema does not match the audio layout {AUDIO_SCHEMA}")
    got = table.column("episode_index").to_pylist()
    if got != [r["episode_index"] for r in eps]:
        raise DatasetError(f"{path}: episode_index {got}, expected {[r['episode_index'] for r in eps]}")
    lengths = pc.list_value_length(table.column("samples")).to_pylist()
    for r, n, sr in zip(eps, lengths, table.column("sample_rate").to_pylist()):
        want = round(r["length"] / fps * sample_rate)
        if sr != sample_rate or n != want:
            raise DatasetError(
                f"{path}: episode {r['episode_index']} has {n} samples at {sr} Hz, expected {want} at {sample_rate} Hz"
            )


def _check_video_file(path: Path, feature: dict, eps: list[dict], key: str, fps: float) -> None:
    try:
        probe = probe_video(path)
    except FileNotFoundError as e:
        raise DatasetError(f"{path}: missing file") from e
    except ValueError as e:
        raise DatasetError(f"{path}: {e}") from e
    H, W, _ = feature["shape"]
    if (probe["height"], probe["width"]) != (H, W):
        raise DatasetError(f"{path}: frames are {probe['height']}x{probe['width']}, expected {H}x{W} from the {key} feature")
    n = sum(r["length"] for r in eps)
    if probe["frames"] != n:
        raise DatasetError(f"{path}: {probe['frames']} frames, expected {n} (the rows of its episodes)")
    cursor = 0
    keys = set(probe["keyframes"])
    for r in eps:
        f0, f1 = r[f"videos/{key}/from_timestamp"] * fps, r[f"videos/{key}/to_timestamp"] * fps
        if abs(f0 - cursor) > 1e-3 or abs(f1 - (cursor + r["length"])) > 1e-3:
            raise DatasetError(
                f"{path}: episode {r['episode_index']} spans frames [{f0:.3f}, {f1:.3f}), "
                f"expected [{cursor}, {cursor + r['length']})"
            )
        if cursor not in keys:
            raise DatasetError(f"{path}: episode {r['episode_index']} does not start at a keyframe (frame {cursor})")
        cursor += r["length"]
    if not math.isclose(float(probe["fps"]), fps, rel_tol=1e-6):
        raise DatasetError(f"{path}: {float(probe['fps'])} fps, expected {fps}")
