"""Read a finished LeRobot v3.0 dataset written by `kinema.data.lerobot`.

Legend: T frames (of an episode or a clip), H height, W width, K objects,
S state dims, A action dims, N audio samples.

  EpisodeStore(root)      random access to whole episodes: `.episode(i)`
                          restores every stream written (an `Episode`), exact
                          with the lossless codec.
  EpisodeList(episodes, name)  the same reading interface over episodes in
                          memory: a run that simulates and trains at once
                          (scripts/simulate_latents.py) needs no
                          dataset on disk and no video codec.
  ClipDataset(root, T)    a torch Dataset over every clip of T consecutive
                          frames inside one episode (a clip starts every
                          `stride` frames); items are dicts of tensors.

Only metadata (info.json, tasks, one small dict per episode) is loaded up
front; parquet and mp4 files are opened per read and closed again, so a store
or a dataset can be pickled into DataLoader workers. A read touches only the
episode's row groups and seeks its videos to the episode's keyframe.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from kinema.data.episode import OBJECT_STATE, Episode
from kinema.data.lerobot import (
    DatasetError,
    extrinsics_key,
    image_key,
    intrinsics_key,
    kinema_columns,
    load_episodes_meta,
    load_info,
    load_tasks,
    mask_key,
    slot_paths,
    video_keys,
)
from kinema.data.video_io import decode_video


def read_rows(path: Path, start: int, count: int, columns=None) -> pa.Table:
    """Rows [start, start + count) of a parquet file, reading only the row groups that hold them."""
    if not path.is_file():
        raise DatasetError(f"{path}: missing file")
    try:
        with pq.ParquetFile(path) as pf:
            md = pf.metadata
            groups, first, pos = [], None, 0
            for g in range(md.num_row_groups):
                n = md.row_group(g).num_rows
                if pos + n > start and pos < start + count:
                    first = pos if first is None else first
                    groups.append(g)
                pos += n
            if pos < start + count:
                raise DatasetError(f"{path}: {pos} rows, expected at least {start + count}")
            table = pf.read_row_groups(groups, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path}: unreadable parquet (truncated or corrupt?): {e}") from e
    return table.slice(start - first, count)


def column_numpy(table: pa.Table, name: str, missing_shape=None, missing_dtype=None) -> np.ndarray:
    """A scalar column -> [T]; a fixed-size list column -> [T, D] (a writable
    copy). An absent column gives zeros(missing_shape) when that is given."""
    if missing_shape is not None and name not in table.column_names:
        return np.zeros(missing_shape, missing_dtype)
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return np.array(col.flatten().to_numpy(zero_copy_only=False)).reshape(len(col), col.type.list_size)
    return np.array(col.to_numpy(zero_copy_only=False))


def binary_numpy(table: pa.Table, name: str, shape: tuple) -> np.ndarray:
    """A fixed_size_binary[H*W] column -> uint8 [T, *shape]."""
    col = table.column(name).combine_chunks()
    width = col.type.byte_width
    data = np.frombuffer(col.buffers()[1], np.uint8)[col.offset * width : (col.offset + len(col)) * width]
    return data.reshape(len(col), *shape).copy()


class EpisodeStore:
    """Random access to the episodes of a finished dataset at `root`.

    `len(store)`, `store.info` (meta/info.json), `store.tasks`, `store.cameras`,
    `store.fps`, `store.episode(i) -> Episode`, `store.read(i, ...)` (arrays only).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.info = load_info(self.root)  # "unfinished dataset ..." when info.json is missing
        kin = self.info.get("kinema", {})
        self.fps = float(kin.get("fps", self.info["fps"]))
        self.cameras = list(kin.get("cameras") or [k.removeprefix("observation.images.") for k in video_keys(self.info)])
        self.sample_rate = int(kin.get("sample_rate", 0))
        self.tasks = load_tasks(self.root)
        self.meta = load_episodes_meta(self.root)
        if len(self.meta) != self.info["total_episodes"]:
            raise DatasetError(
                f"{self.root / 'meta/episodes'}: {len(self.meta)} episodes, info.json says {self.info['total_episodes']}"
            )
        # Where each episode sits inside the files of its (chunk, file) slot, which
        # data, masks and audio share: row offset (data, masks), row position (audio).
        row0, pos = {}, {}
        for r in self.meta:
            slot = (r["data/chunk_index"], r["data/file_index"])
            row0.setdefault(slot, r["dataset_from_index"])
            pos[slot] = pos.get(slot, -1) + 1
            r["_row_offset"] = r["dataset_from_index"] - row0[slot]
            r["_audio_pos"] = pos[slot]

    def __len__(self) -> int:
        return len(self.meta)

    def __iter__(self):
        for i in range(len(self)):
            yield self.episode(i)

    def __repr__(self) -> str:
        frames = self.info["total_frames"]
        return f"EpisodeStore({str(self.root)!r}, episodes={len(self)}, frames={frames}, cameras={self.cameras})"

    def _row(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"episode {i} out of range: {self.root} holds {len(self)} episodes")
        return self.meta[i % len(self)]

    def read(self, i: int, *, cameras=None, frames: bool = True, masks: bool = True, audio: bool = True) -> dict:
        """The arrays of episode i: "state" [T, S], "action" [T, A], "objects"
        [T, K, 13], per camera "frames/<cam>" [T, H, W, 3], "masks/<cam>"
        [T, H, W], "intrinsics/<cam>" [T, 3, 3], "extrinsics/<cam>" [T, 4, 4];
        "audio" [N], "sample_rate"."""
        row = self._row(i)
        cameras = self.cameras if cameras is None else list(cameras)
        unknown = [c for c in cameras if c not in self.cameras]
        if unknown:
            raise ValueError(f"cameras {unknown} are not in {self.root}; it has {self.cameras}")
        T = row["length"]
        paths = slot_paths(self.root, self.info, row["data/chunk_index"], row["data/file_index"])
        data = read_rows(paths["data"], row["_row_offset"], T)
        out = {  # a width-0 stream has no column: [T, 0]
            "state": column_numpy(data, "observation.state", (T, 0), np.float32),
            "action": column_numpy(data, "action", (T, 0), np.float32),
            "objects": column_numpy(data, "observation.objects", (T, 0), np.float64).reshape(T, -1, len(OBJECT_STATE)),
        }
        for cam in cameras:
            out[f"intrinsics/{cam}"] = column_numpy(data, intrinsics_key(cam)).reshape(T, 3, 3)
            out[f"extrinsics/{cam}"] = column_numpy(data, extrinsics_key(cam)).reshape(T, 4, 4)
        if frames:
            for cam in cameras:
                key = image_key(cam)
                path = self.root / self.info["video_path"].format(
                    video_key=key, chunk_index=row[f"videos/{key}/chunk_index"], file_index=row[f"videos/{key}/file_index"]
                )
                start = round(row[f"videos/{key}/from_timestamp"] * self.fps)
                out[f"frames/{cam}"] = decode_video(path, start, T)
        if masks:
            table = read_rows(paths["masks"], row["_row_offset"], T, columns=[mask_key(c) for c in cameras])
            for cam in cameras:
                H, W = self.info["features"][image_key(cam)]["shape"][:2]
                out[f"masks/{cam}"] = binary_numpy(table, mask_key(cam), (H, W))
        if audio:
            table = read_rows(paths["audio"], row["_audio_pos"], 1)
            if table.column("episode_index")[0].as_py() != row["episode_index"]:
                raise DatasetError(f"{paths['audio']}: row {row['_audio_pos']} is not episode {row['episode_index']}")
            samples = table.column("samples").combine_chunks().flatten()
            out["audio"] = np.array(samples.to_numpy(zero_copy_only=False), np.float32)
            out["sample_rate"] = int(table.column("sample_rate")[0].as_py())
        return out

    def episode(self, i: int) -> Episode:
        """Episode i with every stream restored."""
        row = self._row(i)
        a = self.read(i)
        return Episode(
            scenario=json.loads(row["kinema/scenario"]),
            seed=json.loads(row["kinema/seed"]),
            fps=self.fps,
            cameras=list(self.cameras),
            frames={c: a[f"frames/{c}"] for c in self.cameras},
            masks={c: a[f"masks/{c}"] for c in self.cameras},
            state=a["state"],
            objects=a["objects"],
            action=a["action"],
            intrinsics={c: a[f"intrinsics/{c}"] for c in self.cameras},
            extrinsics={c: a[f"extrinsics/{c}"] for c in self.cameras},
            audio=a["audio"],
            sample_rate=a["sample_rate"],
            contacts=json.loads(row["kinema/contacts"]),
            task=row["tasks"][0],
            caption=json.loads(row["kinema/caption"]),
            qa=json.loads(row["kinema/qa"]),
            objects_info=json.loads(row["kinema/objects"]),
            info=json.loads(row["kinema/info"]),
        )

    def caption(self, i: int) -> str:
        return json.loads(self._row(i)["kinema/caption"])


class EpisodeList:
    """Episodes in memory behind EpisodeStore's interface (`len`, `meta`, `cameras`, `fps`, `read`, `episode`):
    `read` gives what the store gives for the same episodes written and read back (the codec is lossless), and a
    meta row holds the same kinema/* columns. `name` stands in for the dataset folder (shard names)."""

    def __init__(self, episodes, name: str):
        self.episodes = list(episodes)
        if not self.episodes:
            raise ValueError(f"EpisodeList {name!r}: no episodes")
        first = self.episodes[0]
        for i, ep in enumerate(self.episodes):
            if ep.cameras != first.cameras or ep.fps != first.fps:
                raise ValueError(f"EpisodeList {name!r}: episode {i} has cameras {ep.cameras} at {ep.fps} fps, "
                                 f"episode 0 {first.cameras} at {first.fps} fps; a dataset holds one of each")
        self.root = Path(name)
        self.fps, self.cameras, self.sample_rate = float(first.fps), list(first.cameras), int(first.sample_rate)
        self.meta = [{"episode_index": i, "tasks": [ep.task], "length": ep.length, **kinema_columns(ep)}
                     for i, ep in enumerate(self.episodes)]

    def __len__(self) -> int:
        return len(self.episodes)

    def __repr__(self) -> str:
        return f"EpisodeList({str(self.root)!r}, episodes={len(self)}, cameras={self.cameras})"

    def read(self, i: int, *, cameras=None, frames: bool = True, masks: bool = True, audio: bool = True) -> dict:
        """As EpisodeStore.read."""
        ep = self.episodes[i]
        cameras = self.cameras if cameras is None else list(cameras)
        unknown = [c for c in cameras if c not in self.cameras]
        if unknown:
            raise ValueError(f"cameras {unknown} are not in {self.root}; it has {self.cameras}")
        T = ep.length
        out = {"state": np.asarray(ep.state, np.float32).reshape(T, -1),
               "action": np.asarray(ep.action, np.float32).reshape(T, -1),
               "objects": np.asarray(ep.objects, np.float64).reshape(T, -1, len(OBJECT_STATE))}
        for cam in cameras:
            out[f"intrinsics/{cam}"] = np.asarray(ep.intrinsics[cam], np.float64)
            out[f"extrinsics/{cam}"] = np.asarray(ep.extrinsics[cam], np.float64)
            if frames:
                out[f"frames/{cam}"] = np.asarray(ep.frames[cam], np.uint8)
            if masks:
                out[f"masks/{cam}"] = np.asarray(ep.masks[cam], np.uint8)
        if audio:
            out["audio"], out["sample_rate"] = np.asarray(ep.audio, np.float32), int(ep.sample_rate)
        return out

    def episode(self, i: int) -> Episode:
        return self.episodes[i]


class ClipDataset(torch.utils.data.Dataset):
    """Every clip of `clip_len` consecutive frames inside one episode, starting
    every `stride` frames. An item is a dict:

      observation.images.<cam>             uint8   [T, H, W, 3]
      observation.masks.<cam>              uint8   [T, H, W]        (with_masks)
      observation.camera.<cam>.intrinsics  float64 [T, 3, 3]
      observation.camera.<cam>.extrinsics  float64 [T, 4, 4]
      observation.state                    float32 [T, S]
      action                               float32 [T, A]
      observation.objects                  float64 [T, K, 13]
      audio                                float32 [round(T / fps * sample_rate)]  (with_audio)
          the samples of [start / fps, (start + T) / fps), zero-padded past the end
      episode_index, frame_index (the clip's first frame), index    int64 []
      timestamp (of the first frame)                                float32 []
      task, caption                                                 str

    Whole episodes are decoded on demand and kept in a tiny per-process LRU
    cache (`cache_size` episodes), so neighbouring clips are cheap; the cache
    is never pickled nor inherited across a fork.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        clip_len: int,
        *,
        cameras=None,
        stride: int = 1,
        with_masks: bool = True,
        with_audio: bool = True,
        cache_size: int = 2,
    ):
        self.store = EpisodeStore(root)
        if clip_len < 1 or stride < 1:
            raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
        self.cameras = list(self.store.cameras if cameras is None else cameras)
        unknown = [c for c in self.cameras if c not in self.store.cameras]
        if unknown:
            raise ValueError(f"cameras {unknown} are not in {self.store.root}; it has {self.store.cameras}")
        self.clip_len, self.stride = int(clip_len), int(stride)
        self.with_masks, self.with_audio, self.cache_size = with_masks, with_audio, int(cache_size)
        clips = [(e, s) for e, r in enumerate(self.store.meta) for s in range(0, r["length"] - clip_len + 1, stride)]
        if not clips:
            longest = max((r["length"] for r in self.store.meta), default=0)
            raise ValueError(f"no clip of {clip_len} frames fits in {self.store.root} (longest episode: {longest} frames)")
        self.clips = np.array(clips, np.int64)  # [M, 2] (episode, start)
        self._cache: OrderedDict = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def _episode(self, e: int) -> dict:
        if self._pid != os.getpid():  # forked: start an own cache
            self._cache, self._pid = OrderedDict(), os.getpid()
        if e in self._cache:
            self._cache.move_to_end(e)
            return self._cache[e]
        arrays = self.store.read(e, cameras=self.cameras, masks=self.with_masks, audio=self.with_audio)
        self._cache[e] = arrays
        while len(self._cache) > max(self.cache_size, 1):
            self._cache.popitem(last=False)
        return arrays

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range: {len(self)} clips")
        e, start = (int(v) for v in self.clips[i])
        a, row, fps = self._episode(e), self.store.meta[e], self.store.fps
        sl = slice(start, start + self.clip_len)

        def t(x):
            return torch.from_numpy(np.ascontiguousarray(x[sl]))

        item = {}
        for cam in self.cameras:
            item[image_key(cam)] = t(a[f"frames/{cam}"])
            if self.with_masks:
                item[mask_key(cam)] = t(a[f"masks/{cam}"])
            item[intrinsics_key(cam)] = t(a[f"intrinsics/{cam}"])
            item[extrinsics_key(cam)] = t(a[f"extrinsics/{cam}"])
        item["observation.state"] = t(a["state"])
        item["action"] = t(a["action"])
        item["observation.objects"] = t(a["objects"])
        if self.with_audio:
            sr = a["sample_rate"]
            a0, n = round(start / fps * sr), round(self.clip_len / fps * sr)
            seg = np.zeros(n, np.float32)
            part = a["audio"][a0 : a0 + n]
            seg[: len(part)] = part
            item["audio"] = torch.from_numpy(seg)
        item["episode_index"] = torch.tensor(e, dtype=torch.int64)
        item["frame_index"] = torch.tensor(start, dtype=torch.int64)
        item["index"] = torch.tensor(row["dataset_from_index"] + start, dtype=torch.int64)
        item["timestamp"] = torch.tensor(start / fps, dtype=torch.float32)
        item["task"] = row["tasks"][0]
        item["caption"] = json.loads(row["kinema/caption"])
        return item
