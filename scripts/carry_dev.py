"""Choose carry's gate (kinema.model.carry) on a dev set of held-out physics rollouts.

One prediction per clip (the physics benchmark's: video2video, the predictor's steps and sampler, carry off),
scored by the physics benchmark with the given frame's detail carried through each gate width tau (pixel levels;
0: no carry; inf or 1e9: no gate), so the settings compare on the same draws. Dev rollouts are held-out indices the
N = 20 table never uses (default 20-27). Rule and results: benchmarks/prereg/carry.md.

    python scripts/carry_dev.py --first 20 --n 8 --taus 0,8,16,32,64,128,1e9 --out outputs/carry-dev
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.eval.harness import request_from_episode
from kinema.eval.physics_alignment import CAMERAS, CLIP_FRAMES, CONDITIONS, SCENARIOS, score_prediction
from kinema.model.carry import carry_detail
from kinema.model.predictor import load_predictor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--first", type=int, default=20)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--taus", default="0,8,16,32,64")
    ap.add_argument("--cache", default="outputs/eval/cache")
    ap.add_argument("--out", default="outputs/carry-dev")
    args = ap.parse_args()
    taus = [float(t) for t in args.taus.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "records.jsonl"
    done = {json.loads(line)["key"] for line in log.open()} if log.exists() else set()
    pred = load_predictor(Path(args.model), device="cpu")
    cache = EpisodeCache(args.cache)
    units = [(sc, i, cond) for sc in SCENARIOS for i in range(args.first, args.first + args.n) for cond in CONDITIONS]
    for sc, i, cond in tqdm(units, desc="carry dev"):
        ep = None
        for cam in CAMERAS:
            key = f"{sc}/{i}/{cond}/{cam}"
            if key in done:
                continue
            ep = ep or cache.get(sc, heldout_seed(i), size=64, frames=CLIP_FRAMES)
            req = request_from_episode(ep, cam, context=cond, future=CLIP_FRAMES - cond, with_actions=False)
            raw = pred.pipeline.run("video2video", num_frames=CLIP_FRAMES, context=req.context, carry=False,
                                    **pred._kw(req))["frames"]
            gt, masks = ep.frames[cam][cond:CLIP_FRAMES], ep.masks[cam][cond:CLIP_FRAMES]
            rec = dict(key=key, scenario=sc, index=i, condition=cond, camera=cam)
            for tau in taus:
                p = raw[cond:] if tau == 0 else carry_detail(raw[cond:], req.context[-1], raw[cond - 1], gate=tau)
                s = score_prediction(p, gt, req.context, req.oracle.context_masks, masks, ep.objects_info)
                rec[f"{tau:g}"] = dict(psnr=s["psnr"], ssim=s["ssim"], iou=s["iou"])
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
    recs = [json.loads(line) for line in log.open()]
    print("tau | " + " | ".join(f"PSNR @{c} | IoU @{c}" for c in CONDITIONS) + " | mean IoU | IoU @9 up in (of 8)")
    for tau in taus:
        row, ious = [], []
        for c in CONDITIONS:
            per = {sc: [r[f"{tau:g}"] for r in recs if r["condition"] == c and r["scenario"] == sc] for sc in SCENARIOS}
            psnr = np.mean([np.mean([x["psnr"] for x in v]) for v in per.values()])
            iou = np.mean([np.nanmean([x["iou"] for x in v]) for v in per.values()])
            row += [f"{psnr:.2f}", f"{iou:.3f}"]
            ious.append(iou)
        up = sum(np.nanmean([r[f"{tau:g}"]["iou"] for r in recs if r["condition"] == 9 and r["scenario"] == sc]) >
                 np.nanmean([r["0"]["iou"] for r in recs if r["condition"] == 9 and r["scenario"] == sc])
                 for sc in SCENARIOS)
        print(f"{tau:g} | " + " | ".join(row) + f" | {np.mean(ious):.3f} | {up}")


if __name__ == "__main__":
    main()
