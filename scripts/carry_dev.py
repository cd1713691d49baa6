"""Choose how carry (kinema.model.carry) adds the given frame's detail, on a dev set of held-out clips.

One prediction per clip (the benchmark's: the predictor's steps and sampler, carry off), kept under <out>/raw so
settings added later score the same draws, then scored with the given frame's detail carried each way asked:
off; plain (added everywhere); gG (gated at G pixel levels); warp (moved with each frame's motion); warp_gG; snap
(moved by whole pixels); still_gG (kept off what moved between the last two given frames).
--bench physics: physics-alignment clips, held-out rollouts the N = 20 table never uses (default 20-27), 4 cameras,
conditions 1 and 9, video2video. --bench actions: forward dynamics on the four action worlds (true actions, 9 given
frames; held-out episodes past those the tables use, e.g. --first 120). Rules and results: benchmarks/prereg/.

    python scripts/carry_dev.py --first 20 --n 8 --methods off,plain,g128,warp,warp_g64 --out outputs/carry-dev
    python scripts/carry_dev.py --bench actions --first 120 --n 20 --methods off,plain,snap,still_g32
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kinema.eval import actions as A
from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.eval.harness import request_from_episode
from kinema.eval.physics_alignment import CAMERAS, CLIP_FRAMES, CONDITIONS, SCENARIOS, score_prediction
from kinema.model.carry import carry_detail
from kinema.model.predictor import load_predictor

WORLDS = A.SCENARIOS  # the manipulation worlds and the moving camera


def follow_motion(frames: np.ndarray, decoded_last: np.ndarray, *images: np.ndarray,
                  snap: bool = False) -> list[np.ndarray]:
    """Tried, not adopted (benchmarks/prereg/carry-motion.md): each of `images` ([H, W, C] float32, in the last
    given frame's coordinates) moved into every generated frame's along the dense optical flow (Farneback) from each
    decoded frame back to the decoded last given frame. snap: the flow rounded to whole pixels and zero under 1 px,
    images looked up, not resampled. frames: uint8 [T, H, W, 3] -> one [T, H, W, C] per image."""
    T, H, W = frames.shape[:3]
    ref = cv2.cvtColor(decoded_last, cv2.COLOR_RGB2GRAY)
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = [np.empty((T,) + im.shape, np.float32) for im in images]
    for t in range(T):
        flow = cv2.calcOpticalFlowFarneback(cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY), ref, None,
                                            0.5, 3, 9, 3, 5, 1.1, 0)  # [H, W, 2]
        if snap:
            flow = np.rint(flow) * (np.linalg.norm(flow, axis=-1, keepdims=True) >= 1)
        mx, my = gx + flow[..., 0], gy + flow[..., 1]
        interp = cv2.INTER_NEAREST if snap else cv2.INTER_LINEAR
        for o, im in zip(out, images):
            o[t] = cv2.remap(im, mx, my, interp, borderMode=cv2.BORDER_REPLICATE).reshape(im.shape)
    return out


def still_gate(given_last: np.ndarray, given_prev: np.ndarray, width: float) -> np.ndarray:
    """Tried, not adopted: 1 where the last two given frames agree, 0 at `width` levels of change (largest channel,
    dilated 3 x 3): uint8 [H, W, 3] twice -> float32 [H, W, 1]."""
    d = np.abs(given_last.astype(np.int16) - given_prev.astype(np.int16)).max(-1).astype(np.float32)
    return np.clip(1.0 - cv2.dilate(d, np.ones((3, 3), np.uint8)) / width, 0.0, 1.0)[..., None]


def apply(method: str, raw: np.ndarray, given: np.ndarray, decoded_last: np.ndarray) -> np.ndarray:
    """raw: uint8 [Tf, H, W, 3] generated frames as decoded; given: the given frames; method as in the module
    docstring."""
    if method == "off":
        return raw
    gate = float(method.split("g")[-1]) if "_g" in method or method.startswith("g") else math.inf
    if not method.startswith(("warp", "snap", "still")):
        return carry_detail(raw, given[-1], decoded_last, gate=gate)
    x, ref = raw.astype(np.float32), decoded_last.astype(np.float32)
    err = given[-1].astype(np.float32) - ref  # [H, W, 3]
    if method.startswith("still"):
        if len(given) > 1:
            err = err * still_gate(given[-1], given[-2], gate)
        gate = math.inf
    else:
        err, ref = follow_motion(raw, decoded_last, err, ref, snap=method.startswith("snap"))  # [Tf, H, W, 3] each
    g = 1.0 if math.isinf(gate) else np.clip(1.0 - np.abs(x - ref).max(-1, keepdims=True) / gate, 0.0, 1.0)
    return np.clip(np.rint(x + g * err), 0, 255).astype(np.uint8)


def clips(bench: str, first: int, n: int, cache: EpisodeCache):
    """(key, scenario, condition, episode, request, truth, truth masks) of every dev clip, episodes read lazily."""
    if bench == "physics":
        for sc in SCENARIOS:
            for i in range(first, first + n):
                for cond in CONDITIONS:
                    for cam in CAMERAS:
                        ep = cache.get(sc, heldout_seed(i), size=64, frames=CLIP_FRAMES)
                        req = request_from_episode(ep, cam, context=cond, future=CLIP_FRAMES - cond,
                                                   with_actions=False)
                        yield (f"{sc}/{i}/{cond}/{cam}", sc, cond, ep, req, ep.frames[cam][cond:CLIP_FRAMES],
                               ep.masks[cam][cond:CLIP_FRAMES])
    else:
        for sc in WORLDS:
            for i in range(first, first + n):
                ep = cache.get(sc, heldout_seed(i), size=64)
                start = A.clip_start(ep, A.CLIP_FRAMES)
                s, e = start + A.CONTEXT, start + A.CLIP_FRAMES
                for cam in ep.cameras:
                    req = request_from_episode(ep, cam, context=A.CONTEXT, future=A.CLIP_FRAMES - A.CONTEXT,
                                               start=start)
                    yield f"{sc}/{i}/{cam}", sc, A.CONTEXT, ep, req, ep.frames[cam][s:e], ep.masks[cam][s:e]


def predict_raw(pred, req) -> np.ndarray:
    """The whole clip as decoded (given frames included), carry off: uint8 [T, H, W, 3]."""
    T = len(req.context) + int(req.num_frames)
    if req.actions is None:
        return pred.pipeline.run("video2video", num_frames=T, context=req.context, carry=False,
                                 **pred._kw(req))["frames"]
    return pred.pipeline.run("forward_dynamics", num_frames=T, context=req.context, actions=req.actions,
                             action_guidance=pred.action_guidance, carry=False, **pred._kw(req))["frames"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--bench", choices=("physics", "actions"), default="physics")
    ap.add_argument("--first", type=int, default=20)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--methods", default="off,plain,g128,warp,warp_g64")
    ap.add_argument("--cache", default="outputs/eval/cache")
    ap.add_argument("--out", default="outputs/carry-dev")
    args = ap.parse_args()
    methods = args.methods.split(",")
    out = Path(args.out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    pred = load_predictor(Path(args.model), device="cpu")
    cache = EpisodeCache(args.cache)
    rows = []
    for key, sc, cond, ep, req, gt, masks in tqdm(list(clips(args.bench, args.first, args.n, cache)), desc="carry dev"):
        path = out / "raw" / (key.replace("/", "_") + ".npy")
        if path.exists():
            raw = np.load(path)
        else:
            raw = predict_raw(pred, req)
            np.save(path.with_suffix(".tmp.npy"), raw)
            path.with_suffix(".tmp.npy").replace(path)  # atomic: a kill leaves no half-written clip
        rec = dict(key=key, scenario=sc, condition=cond)
        for m in methods:
            p = apply(m, raw[cond:], req.context, raw[cond - 1])
            s = score_prediction(p, gt, req.context, req.oracle.context_masks, masks, ep.objects_info)
            rec[m] = dict(psnr=s["psnr"], ssim=s["ssim"], iou=s["iou"])
        rows.append(rec)
    (out / f"scores_{args.bench}.json").write_text(json.dumps(rows))
    scens = sorted({r["scenario"] for r in rows})
    conds = sorted({r["condition"] for r in rows})

    def mean(m, c, sc, f):
        v = [r[m][f] for r in rows if r["condition"] == c and r["scenario"] == sc and r[m][f] is not None]
        v = [x for x in v if not (isinstance(x, float) and math.isnan(x))]
        return float(np.mean(v)) if v else float("nan")

    head = " | ".join(f"PSNR @{c} | SSIM @{c} | IoU @{c}" for c in conds)
    print(f"method | {head} | mean IoU | PSNR up in (of {len(scens)}) | IoU up in")
    for m in methods:
        cells, ious = [], []
        for c in conds:
            for f in ("psnr", "ssim", "iou"):
                x = np.nanmean([mean(m, c, sc, f) for sc in scens])
                cells.append(f"{x:.3f}" if f != "psnr" else f"{x:.2f}")
                ious += [x] if f == "iou" else []
        c = conds[-1]
        ref = methods[1] if len(methods) > 1 and m != methods[1] else methods[0]
        up_p = sum(mean(m, c, sc, "psnr") > mean(ref, c, sc, "psnr") for sc in scens)
        up_i = sum(mean(m, c, sc, "iou") > mean(ref, c, sc, "iou") for sc in scens)
        print(f"{m} | " + " | ".join(cells) + f" | {np.nanmean(ious):.3f} | {up_p} | {up_i}  (vs {ref} @{c})")


if __name__ == "__main__":
    main()
