"""Did the robot succeed? Judged from frames alone, so it works on imagined episodes too.

Legend: T frames, H height, W width, C cameras.

The simulator judges success from object states (kinema.worlds.tabletop
`outcome`). A world model imagines frames only, so its episodes are judged by
looking, with what the task definition gives (which block, the goal's centre
and radius, the blocks' sizes, the fixed cameras' intrinsics and extrinsics):

1. Segment. Per camera, a ColourSegmenter (kinema.eval.segment) is fitted on
   the first frame and its ground-truth masks (the real start every imagined
   episode shares) and labels every frame.
2. Locate. A block's image centroid (its labelled pixels, at least
   MIN_PIXELS) is a ray from its camera. With both cameras seeing it, the block
   is at the point nearest both rays (least squares); with one, where the ray
   meets the horizontal plane at the block's resting centre height. The
   visible surface biases the point by a centimetre or so, the same way in
   every frame, so heights are compared with the block's own first frame.
3. Test, on the median position of the last FINAL_FRAMES frames:
   push        block centre within the goal radius, and back down (within
               DZ_TOL of its starting height);
   pick_place  the same, and lifted at some point (LIFT m above its start,
               on a 3-frame running median, so one bad frame cannot fake it);
   stack       the top block within the base's half-extent of the base
               horizontally, risen by the base's height (within DZ_TOL), and
               the base not lifted (its visible centre may only sink, as the
               top block hides its top face).
A block no camera sees at the end counts as failure: success must be visible.
The simulator's own test also asks for upright blocks, which centroids cannot
show. How often this agrees with the simulator on real episodes is reported
next to every imagined success rate.
"""

from __future__ import annotations

import numpy as np

from kinema.eval.segment import ColourSegmenter

MIN_PIXELS = 3
FINAL_FRAMES = 4
DZ_TOL = 0.02  # m
LIFT = 0.03  # m, as the simulator's "lifted" (the block's lowest point 3 cm above the table)
TASKS = ("push", "pick_place", "stack")


def pixel_ray(K: np.ndarray, E: np.ndarray, uv) -> tuple[np.ndarray, np.ndarray]:
    """World ray (origin, unit direction) through image point uv = (column, row) in pixels (OpenCV camera)."""
    R, t = E[:3, :3], E[:3, 3]
    d = R.T @ np.linalg.solve(K, np.array([uv[0], uv[1], 1.0]))
    return -R.T @ t, d / np.linalg.norm(d)


def nearest_point(rays) -> np.ndarray:
    """The point with the least summed squared distance to the rays [(origin, unit direction), ...]."""
    A, b = np.zeros((3, 3)), np.zeros(3)
    for o, d in rays:
        P = np.eye(3) - np.outer(d, d)  # projects onto the plane normal to the ray
        A += P
        b += P @ o
    return np.linalg.solve(A, b)


def on_plane(ray, z: float) -> np.ndarray:
    o, d = ray
    if abs(d[2]) < 1e-9:
        return np.full(3, np.nan)
    return o + d * (z - o[2]) / d[2]


def locate(labels: dict[str, np.ndarray], K: dict[str, np.ndarray], E: dict[str, np.ndarray], obj: int,
           rest_z: float) -> np.ndarray:
    """float [T, 3] world position of object `obj` per frame from label maps uint8 [T, H, W] per camera
    (NaN where no camera sees it)."""
    T = len(next(iter(labels.values())))
    out = np.full((T, 3), np.nan)
    for t in range(T):
        rays = []
        for cam, lab in labels.items():
            ys, xs = np.nonzero(lab[t] == obj)
            if len(ys) >= MIN_PIXELS:
                rays.append(pixel_ray(K[cam][t], E[cam][t], (xs.mean() + 0.5, ys.mean() + 0.5)))
        if len(rays) >= 2:
            out[t] = nearest_point(rays)
        elif len(rays) == 1:
            out[t] = on_plane(rays[0], rest_z)
    return out


def _final(p: np.ndarray) -> np.ndarray:
    tail = p[-FINAL_FRAMES:]
    tail = tail[~np.isnan(tail[:, 0])]
    return np.median(tail, axis=0) if len(tail) else np.full(3, np.nan)


def _start(p: np.ndarray) -> np.ndarray:
    seen = p[~np.isnan(p[:, 0])]
    return seen[0] if len(seen) else np.full(3, np.nan)


def _running_median3(z: np.ndarray) -> np.ndarray:
    pad = np.concatenate([z[:1], z, z[-1:]])
    return np.array([np.nanmedian(pad[i : i + 3]) if np.any(~np.isnan(pad[i : i + 3])) else np.nan
                     for i in range(len(z))])


def judge_frames(task: str, frames: dict[str, np.ndarray], first_masks: dict[str, np.ndarray], info: dict,
                 objects_info: list[dict], K: dict[str, np.ndarray], E: dict[str, np.ndarray]) -> dict:
    """Success of a tabletop episode from its frames (camera -> uint8 [T, H, W, 3]).

    first_masks: camera -> uint8 [H, W] ground-truth ids of frame 0; info: the episode's info (its
    "params" name the blocks and the goal); K, E: camera -> [T, 3, 3] and [T, 4, 4].
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    labels = {cam: ColourSegmenter.fit(f[:1], first_masks[cam][None], objects_info)(f) for cam, f in frames.items()}
    p = info["params"]
    by_name = {o["name"]: o for o in objects_info}

    def track(which: str):
        """The block p[which] ("block" or "base"): its half-size, positions [T, 3], first and final seen positions."""
        half = np.asarray(p[f"{which}_half"], float)
        pos = locate(labels, K, E, by_name[p[which]]["id"], half[2])
        return half, pos, _start(pos), _final(pos)

    _, pos, start, end = track("block")
    if np.isnan(end[0]) or np.isnan(start[0]):
        return dict(success=False, visible=False)
    dz = float(end[2] - start[2])
    if task in ("push", "pick_place"):
        dist = float(np.linalg.norm(end[:2] - np.asarray(p["goal_xy"])))
        in_goal, down = dist < p["goal_radius"], abs(dz) < DZ_TOL
        lift = float(np.nanmax(_running_median3(pos[:, 2]) - start[2]))
        ok = in_goal and down and (task == "push" or lift > LIFT)
        return dict(success=bool(ok), visible=True, distance_to_goal_m=dist, final_dz_m=dz, max_lift_m=lift)
    bhalf, _, bstart, bend = track("base")
    if np.isnan(bend[0]) or np.isnan(bstart[0]):
        return dict(success=False, visible=False)
    offset = float(np.linalg.norm(end[:2] - bend[:2]))
    rise_err = dz - 2 * bhalf[2]
    # the top block hides the base's top face, which lowers the base's visible centre: only a rise is failure
    ok = offset < min(bhalf[:2]) and abs(rise_err) < DZ_TOL and bend[2] - bstart[2] < DZ_TOL
    return dict(success=bool(ok), visible=True, horizontal_offset_m=offset, rise_error_m=float(rise_err))


def judge_episode(ep, frames: dict[str, np.ndarray] | None = None) -> dict:
    """judge_frames on an episode's own frames, or on other `frames` (imagined) sharing its start."""
    return judge_frames(ep.scenario, ep.frames if frames is None else frames,
                        {c: ep.masks[c][0] for c in ep.cameras}, ep.info, ep.objects_info,
                        ep.intrinsics, ep.extrinsics)
