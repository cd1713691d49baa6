"""Export a dataset to webdataset tar shards, and read them back.

Legend: T frames, H height, W width, K objects, S state dims, A action dims,
N audio samples.

One sample per episode, key `episode_NNNNNN` (the episode index). Members:

  frames.<cam>.mp4       the frames uint8 [T, H, W, 3], re-encoded with the
                         lossless codec (exact, ~70 bytes per 64x64 frame
                         instead of 12 KiB as .npy)
  masks.<cam>.npy        uint8 [T, H, W]
  intrinsics.<cam>.npy   float64 [T, 3, 3]
  extrinsics.<cam>.npy   float64 [T, 4, 4]
  state.npy              float32 [T, S]
  action.npy             float32 [T, A]
  objects.npy            float64 [T, K, 13]
  audio.npy              float32 [N]
  meta.json              every other Episode field (scenario, seed, fps,
                         cameras, sample_rate, contacts, task, caption, qa,
                         objects_info, info) and episode_index

webdataset lower-cases member suffixes, so camera names are written
lower-cased (two cameras differing only in case are refused). Arrays are .npy
written and read with allow_pickle=False: no pickle anywhere.

Shards are written as `shard-NNNNNN.tar.tmp` and renamed to `shard-NNNNNN.tar`
once complete, so a killed export leaves no half shard under a final name.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import webdataset as wds
from tqdm.auto import tqdm

from kinema.data.episode import Episode
from kinema.data.lerobot import to_json
from kinema.data.reader import EpisodeStore
from kinema.data.video_io import decode_video, encode_video_bytes

SHARD_PATTERN = "shard-%06d.tar"
_META_FIELDS = (
    "scenario", "seed", "fps", "cameras", "sample_rate", "contacts", "task", "caption", "qa", "objects_info", "info"
)
_ARRAYS = ("state", "action", "objects", "audio")
_PER_CAMERA = ("masks", "intrinsics", "extrinsics")
_CAMERA_NAME = re.compile(r"^[A-Za-z0-9_\-.]+$")


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _camera_suffixes(cameras: list[str]) -> dict[str, str]:
    out = {cam: cam.lower() for cam in cameras}
    bad = [c for c in cameras if not _CAMERA_NAME.match(c)]
    if bad or len(set(out.values())) != len(out):
        raise ValueError(
            f"camera names {cameras} cannot name tar members "
            "(need names of [A-Za-z0-9_-.], distinct case-insensitively)"
        )
    return out


def episode_sample(ep: Episode, index: int) -> dict:
    """One Episode -> a webdataset sample {"__key__": ..., member suffix: bytes}."""
    sample = {"__key__": f"episode_{index:06d}"}
    for cam, suffix in _camera_suffixes(ep.cameras).items():
        sample[f"frames.{suffix}.mp4"] = encode_video_bytes(ep.frames[cam], ep.fps, codec="lossless")
        for name in _PER_CAMERA:
            sample[f"{name}.{suffix}.npy"] = _npy(getattr(ep, name)[cam])
    for name in _ARRAYS:
        sample[f"{name}.npy"] = _npy(getattr(ep, name))
    meta = {name: getattr(ep, name) for name in _META_FIELDS}
    meta["episode_index"] = index
    sample["meta.json"] = to_json(meta).encode()
    return sample


def export_webdataset(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    maxcount: int = 100,
    overwrite: bool = False,
    progress: bool = True,
) -> list[str]:
    """Write every episode of the dataset at `root` into tar shards of at most
    `maxcount` episodes in `out_dir`; returns the shard paths in order.

    Leftover `*.tar.tmp` files of a killed export are removed; existing shards
    are refused unless `overwrite=True` (then they are removed first).
    """
    store = EpisodeStore(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for tmp in out_dir.glob("shard-*.tar.tmp"):
        tmp.unlink()
    existing = sorted(out_dir.glob("shard-*.tar"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds {len(existing)} shards (e.g. {existing[0].name}); "
            "pass overwrite=True or pick another folder"
        )
    for old in existing:
        old.unlink()
    if len(store) == 0:
        return []

    written: list[str] = []

    def publish(tmp_name: str) -> None:
        final = tmp_name.removesuffix(".tmp")
        with open(tmp_name, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_name, final)
        written.append(final)

    sink = wds.ShardWriter(str(out_dir / (SHARD_PATTERN + ".tmp")), maxcount=maxcount, post=publish, verbose=0, mtime=0)
    try:
        for i in tqdm(range(len(store)), desc=f"exporting {store.root.name}", unit="ep", disable=not progress):
            sink.write(episode_sample(store.episode(i), i))
    except BaseException:
        sink.post = None  # the open shard is incomplete: close it but do not publish it
        sink.close()
        for tmp in out_dir.glob("shard-*.tar.tmp"):
            tmp.unlink()
        raise
    sink.close()
    return written


def decode_sample(raw: dict) -> dict:
    """A raw webdataset sample (member suffix -> bytes) -> {"__key__", "__url__",
    "episode_index", and every Episode field under its own name}."""
    meta = json.loads(raw["meta.json"])
    label = f"{raw.get('__url__', '?')}:{raw['__key__']}"
    out = {"__key__": raw["__key__"], "__url__": raw.get("__url__"), **meta}
    suffixes = _camera_suffixes(meta["cameras"])

    def npy(name: str) -> np.ndarray:
        if name not in raw:
            raise ValueError(f"shard sample {label} has no member {name!r}")
        return np.load(io.BytesIO(raw[name]), allow_pickle=False)

    out["frames"] = {
        cam: decode_video(raw[f"frames.{s}.mp4"], name=f"{label}.frames.{s}.mp4") for cam, s in suffixes.items()
    }
    for name in _PER_CAMERA:
        out[name] = {cam: npy(f"{name}.{s}.npy") for cam, s in suffixes.items()}
    for name in _ARRAYS:
        out[name] = npy(f"{name}.npy")
    return out


def sample_to_episode(sample: dict) -> Episode:
    """A decoded sample (from `iter_webdataset`) -> Episode."""
    fields = _META_FIELDS + _ARRAYS + _PER_CAMERA + ("frames",)
    return Episode(**{k: sample[k] for k in fields})


def iter_webdataset(urls) -> wds.WebDataset:
    """Decoded samples (see `decode_sample`) from shard paths/URLs (a list or a
    brace pattern), in order; splits shards across DataLoader workers."""
    if isinstance(urls, (str, os.PathLike)):
        urls = str(urls)
    else:
        urls = [str(u) for u in urls]
    return wds.WebDataset(urls, shardshuffle=False, empty_check=False).map(decode_sample)
