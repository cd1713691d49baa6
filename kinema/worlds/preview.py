"""Look at a dataset: a contact-sheet PNG and an mp4 grid a person can watch.

Legend: E episodes shown, C cameras, T frames, H height, W width.

Sheet: one row per (episode, camera), evenly spaced frames across, labelled.
Video: every frame as a grid, episodes down and cameras across, upscaled.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kinema.data.reader import EpisodeStore
from kinema.data.video_io import encode_video


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _upscale(img: np.ndarray, k: int) -> np.ndarray:
    return img if k == 1 else np.repeat(np.repeat(img, k, axis=-3), k, axis=-2)


def contact_sheet(rows: list[tuple[str, np.ndarray]], columns: int = 8, scale: int = 2) -> np.ndarray:
    """rows: (label, uint8 [T,H,W,3]) -> uint8 sheet [rows*H*scale, columns*W*scale, 3]."""
    lines = []
    for label, frames in rows:
        idx = np.linspace(0, len(frames) - 1, min(columns, len(frames))).round().astype(int)
        tiles = [_upscale(frames[i], scale) for i in idx]
        tiles[0] = _label(tiles[0], label)
        for j, i in enumerate(idx[1:], 1):
            tiles[j] = _label(tiles[j], f"t={i}")
        pad = columns - len(tiles)
        tiles += [np.zeros_like(tiles[0])] * pad
        lines.append(np.concatenate(tiles, axis=1))
    return np.concatenate(lines, axis=0)


def write_png(path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def preview(root, out_dir=None, *, episodes: int = 4, scale: int = 2) -> tuple[Path, Path]:
    """Write preview.png and preview.mp4 for the first `episodes` episodes of the dataset at `root`."""
    store = EpisodeStore(root)
    out_dir = Path(out_dir or root)
    eps = [store.episode(i) for i in range(min(episodes, len(store)))]
    rows = []
    for i, ep in enumerate(eps):
        tag = "" if ep.info.get("plausible", True) else " twin"
        rows += [(f"ep{i} {cam}{tag}", ep.frames[cam]) for cam in ep.cameras]
    png = write_png(out_dir / "preview.png", contact_sheet(rows, scale=scale))
    T = min(ep.length for ep in eps)
    grid = np.concatenate(
        [np.concatenate([_upscale(ep.frames[c][:T], scale) for c in ep.cameras], axis=2) for ep in eps], axis=1
    )  # [T, E*H, C*W, 3]
    mp4 = encode_video(out_dir / "preview.mp4", grid, eps[0].fps, codec="preview")
    return png, Path(mp4 if mp4 is not None else out_dir / "preview.mp4")
