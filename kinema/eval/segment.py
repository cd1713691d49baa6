"""Object masks from predicted frames, by each object's known colour.

Legend: T frames, H height, W width, P pixels, S shades, L labels.

A world model returns pixels, not masks, so object IoU needs a segmenter. The
worlds make this easy on purpose: every object has a distinct palette colour
(`kinema.worlds.scene.PALETTE`, recorded in `Episode.objects_info`), and the
renderer's lighting only makes a surface brighter or darker. So:

1. Fit on ground truth. On the context frames (which the model was given),
   the ground-truth id masks say which pixels belong to which label: every
   object id (moving or static: floor, ramp, robot ...) and 0 for empty
   space. Each label's pixels are clustered into a few *shades* (k-means in
   RGB, up to 3: a box's lit and shaded faces, the gyroscope's disc and stem,
   the robot's grey arm and black fingers). For every shade we keep its mean
   colour `a` and the range of *brightness* `s` seen along it, where a pixel
   p has brightness s = p·a / |a|² (1 at the mean colour).
2. Classify a frame. A pixel p is compared with every shade's brightness line
   segment {s·a : s in [lo, hi]} (the seen range widened by BRIGHTNESS_MARGIN,
   so a face turned away from the light is still recognised), and takes the
   label of the nearest one. Brightness changes move a pixel along the line,
   a different hue moves it off it: that is what makes the rule robust to
   shading while telling red from orange.
3. Reject what matches nothing: a pixel farther than REJECT_DISTANCE (RGB on
   [0, 1]) from every shade is labelled 0 (background). Pixels taking a
   static label (floor, table ...) are background for object IoU too, since
   only the labels the caller asks for are scored.

An object the context never shows (hidden behind the track, under the stack,
outside the view), or shows only a few pixels of, lacks measured shades for
the faces that turn up later. Given `objects_info`, every object of a palette
colour also gets a shade from that known colour (the albedo `rgb`) with the
brightness range PRIOR_BRIGHTNESS that the worlds' lighting produces (ambient
0.3-0.45 plus headlight and key light: a surface renders at about 0.3-1.5
times its albedo); so does any other object the context does not show.
Neutral colours (floor, table, robot) are left to their measured shades: a
wide grey prior would swallow the dark-grey arm on the grey table.

Validated on ground-truth frames in tests/eval/test_segment.py and by
benchmarks/eval.py (figures in BENCHMARKS.md): segmenting the simulator's own
future frames must give object IoU near 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinema.worlds.scene import PALETTE

MAX_SHADES = 3  # shades per label
MAX_FIT_PIXELS = 4000  # per label: a random subset is plenty to fit 3 shades
BRIGHTNESS_MARGIN = (0.6, 1.35)  # seen brightness range [lo, hi] widened to [lo*0.6, hi*1.35]
REJECT_DISTANCE = 0.18  # RGB distance on [0, 1] beyond which a pixel matches no shade
_MIN_SHADE_PIXELS = 4  # a cluster smaller than this is noise, not a shade
PRIOR_BRIGHTNESS = (0.3, 1.5)  # brightness range of a shade known only from objects_info


def _kmeans(x: np.ndarray, k: int, iters: int = 12) -> np.ndarray:
    """Deterministic k-means of x [P, 3]: farthest-point start, Lloyd steps. -> centres [k', 3]."""
    centres = [x.mean(axis=0)]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        if d.max() < 0.03**2:  # the rest is within 0.03 of a centre already: one shade fewer
            break
        centres.append(x[int(d.argmax())])
    c = np.asarray(centres)
    for _ in range(iters):
        lab = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        c = np.stack([x[lab == j].mean(0) if np.any(lab == j) else c[j] for j in range(len(c))])
    return c


@dataclass
class ColourSegmenter:
    """Nearest-shade classifier; build it with `ColourSegmenter.fit(frames, masks)`."""

    labels: np.ndarray  # int64 [S] the label (object id, 0 = empty) of each shade
    colours: np.ndarray  # float64 [S, 3] mean colour a of each shade on [0, 1]
    lo: np.ndarray  # float64 [S] brightness range of each shade (already widened)
    hi: np.ndarray  # float64 [S]

    @classmethod
    def fit(cls, frames, masks, objects_info: list[dict] | None = None, seed: int = 0) -> "ColourSegmenter":
        """frames uint8 [T, H, W, 3] with their ground-truth id masks uint8 [T, H, W];
        objects_info (as `Episode.objects_info`) supplies the colour of objects the frames do not show."""
        frames, masks = np.asarray(frames), np.asarray(masks)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames: expected uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
        if masks.shape != frames.shape[:3]:
            raise ValueError(f"masks: expected the frames' [T, H, W] = {frames.shape[:3]}, got {masks.shape}")
        rgb = frames.reshape(-1, 3).astype(np.float64) / 255.0  # [P, 3]
        ids = masks.reshape(-1).astype(np.int64)  # [P]
        rng = np.random.default_rng(seed)
        labels, colours, lo, hi = [], [], [], []
        for k in np.unique(ids):
            px = rgb[ids == k]
            if len(px) > MAX_FIT_PIXELS:
                px = px[rng.choice(len(px), MAX_FIT_PIXELS, replace=False)]
            centres = _kmeans(px, MAX_SHADES)
            nearest = ((px[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
            for j, a in enumerate(centres):
                member = px[nearest == j]
                if len(member) == 0 or (len(member) < _MIN_SHADE_PIXELS <= len(px)):
                    continue  # an empty cluster, or a speck of a label that has real shades
                a = np.maximum(a, 1e-3)  # black objects still need a direction
                s = member @ a / (a @ a)
                labels.append(k)
                colours.append(a)
                lo.append(s.min() * BRIGHTNESS_MARGIN[0])
                hi.append(s.max() * BRIGHTNESS_MARGIN[1])
        seen = set(labels)
        for o in objects_info or ():
            if o.get("rgb") is not None and (o.get("colour") in PALETTE or int(o["id"]) not in seen):
                labels.append(int(o["id"]))
                colours.append(np.maximum(np.asarray(o["rgb"], np.float64), 1e-3))
                lo.append(PRIOR_BRIGHTNESS[0])
                hi.append(PRIOR_BRIGHTNESS[1])
        return cls(np.asarray(labels, np.int64), np.asarray(colours), np.asarray(lo), np.asarray(hi))

    def distances(self, frames) -> np.ndarray:
        """float64 [T, H, W, S]: distance of every pixel to every shade's brightness segment."""
        f = np.asarray(frames)
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"frames: expected uint8 [T, H, W, 3], got {f.dtype} {f.shape}")
        p = f.astype(np.float64) / 255.0  # [T, H, W, 3]
        a = self.colours  # [S, 3]
        s = np.clip((p @ a.T) / (a * a).sum(1), self.lo, self.hi)  # [T, H, W, S] nearest brightness
        # |p - s a|^2 = |p|^2 - 2 s p.a + s^2 |a|^2
        d2 = (p * p).sum(-1, keepdims=True) - 2 * s * (p @ a.T) + s * s * (a * a).sum(1)
        return np.sqrt(np.maximum(d2, 0.0))

    def __call__(self, frames) -> np.ndarray:
        """uint8 [T, H, W, 3] -> uint8 [T, H, W] label per pixel (0 = background or no match)."""
        d = self.distances(frames)
        best = d.argmin(-1)  # [T, H, W]
        out = self.labels[best]
        out[np.take_along_axis(d, best[..., None], -1)[..., 0] > REJECT_DISTANCE] = 0
        return out.astype(np.uint8)


def moving_ids(objects_info: list[dict]) -> list[int]:
    """The ids object IoU is scored on: everything that can move (dynamic, articulated, robot).

    Static structures (floor, table, ramp, track, goal regions) never move, so
    their IoU would only reward copying the background; Cosmos 1 likewise
    tracks the moving objects.
    """
    return [int(o["id"]) for o in objects_info if o.get("kind") != "static"]


def keep_ids(masks: np.ndarray, ids) -> np.ndarray:
    """Id masks with every label not in `ids` set to 0 (background)."""
    return np.where(np.isin(masks, list(ids)), masks, 0).astype(np.uint8)
