"""Training and evaluation data for the tokenizers: every camera stream and sound track of a set of datasets.

Legend: T clip frames, H height, W width, N audio samples.

`--data DIR` names a LeRobot dataset or a folder of them (any depth); all their
episodes are decoded once into memory (uint8; 64x64 worlds are small: 100k
frames are 1.2 GB) and served as fixed, enumerable clips so that a clip index
means the same clip in every process and after every resume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kinema.data.reader import EpisodeStore


def find_datasets(root) -> list[Path]:
    """`root` itself if it is a dataset, else every dataset below it (sorted, so the order is reproducible)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"--data {root}: no such directory")
    if (root / "meta" / "info.json").is_file():
        return [root]
    found = sorted(p.parent.parent for p in root.glob("**/meta/info.json") if ".staging" not in p.parts)
    if not found:
        raise ValueError(f"--data {root}: no LeRobot dataset (meta/info.json) in it or below it")
    return found


def load_streams(root, *, video: bool = True, audio: bool = False, progress: bool = True, max_episodes: int | None = None):
    """Every (dataset name, camera, frames uint8 [T, H, W, 3]) and (dataset name, audio f32 [N]) under root."""
    streams, sounds = [], []
    sets = find_datasets(root)
    bar = tqdm(total=len(sets), desc="load datasets", unit="set", disable=not progress)
    for path in sets:
        store = EpisodeStore(path)
        n = len(store) if max_episodes is None else min(len(store), max_episodes)
        for i in range(n):
            a = store.read(i, frames=video, masks=False, audio=audio)
            if video:
                streams += [(path.name, cam, a[f"frames/{cam}"]) for cam in store.cameras]
            if audio and len(a["audio"]):
                sounds.append((path.name, a["audio"]))
        bar.update()
    bar.close()
    return streams, sounds


def to_model(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [3, T, H, W] in [-1, 1]."""
    x = torch.as_tensor(frames)
    return x.permute(3, 0, 1, 2).float() / 127.5 - 1.0


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """float [3, T, H, W] in [-1, 1] -> uint8 [T, H, W, 3]."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


class VideoClips(torch.utils.data.Dataset):
    """Clips of `clip_len` frames from every camera stream, one starting every `stride` frames.
    Items: float [3, clip_len, H, W] in [-1, 1] (a random horizontal flip when `flip`)."""

    def __init__(self, streams, clip_len: int, stride: int = 4, flip: bool = False):
        self.frames = [torch.from_numpy(np.ascontiguousarray(f)) for _, _, f in streams]
        self.clip_len, self.flip = clip_len, flip
        self.index = [(s, t) for s, f in enumerate(self.frames) for t in range(0, len(f) - clip_len + 1, stride)]
        if not self.index:
            raise ValueError(f"no stream has {clip_len} frames")

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        s, t = self.index[i]
        x = to_model(self.frames[s][t : t + self.clip_len])
        if self.flip and (i * 2654435761) % 2:  # deterministic in i: the same item every epoch and resume
            x = x.flip(-1)
        return x


class AudioClips(torch.utils.data.Dataset):
    """Segments of `length` samples, one every `stride`; near-silent ones kept at a ratio of 1 in `keep_silent`
    (the worlds' sounds are sparse impacts: without this most of training would be silence)."""

    def __init__(self, sounds, length: int, stride: int | None = None, keep_silent: int = 10, threshold: float = 1e-3):
        stride = stride or length // 2
        self.sounds = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for _, a in sounds]
        self.length = length
        self.index, silent = [], 0
        for s, a in enumerate(self.sounds):
            for t in range(0, len(a) - length + 1, stride):
                if float(a[t : t + length].abs().max()) > threshold:
                    self.index.append((s, t))
                else:
                    silent += 1
                    if silent % keep_silent == 0:
                        self.index.append((s, t))
        if not self.index:
            raise ValueError(f"no sound track has {length} samples")

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        s, t = self.index[i]
        return self.sounds[s][t : t + self.length].clamp(-1, 1)
