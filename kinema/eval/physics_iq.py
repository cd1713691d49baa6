"""Benchmark 2, the Physics-IQ-style score: does the predicted motion happen where, when and as much as the real one?

Legend: T = 33 clip frames, Tc context frames, Tf = T - Tc predicted frames, H height, W width.

The same held-out rollouts and views as the physics-alignment benchmark. For
each clip, motion masks (Physics-IQ's background subtraction,
kinema.eval.metrics.motion_masks) are computed on the last context frame
followed by the Tf predicted frames; the last context frame seeds the running
background, so motion in the first predicted frame counts, and its own (always
empty) mask is dropped. The same is done for the simulator's frames and for a
second take of the scene (kinema.eval.simulator.SecondTake: the same seed,
initial velocities nudged), which gives the physical variance (take 1; the `second_take` baseline
predicts with take 2, another nudge, so it is scored against a take it has not
seen). Per clip:
spatial, spatiotemporal and weighted spatial IoU of the masks and the MSE of
the frames, prediction vs simulator and second take vs simulator. The score
(kinema.eval.metrics.physics_iq_score) divides the prediction's mean IoUs by
the second take's and subtracts the MSE excess, as Physics-IQ does: about 100
means "as close to the simulator as the simulator's own second take".

Physics-IQ's published scores (REFERENCE §7: best 62.6, Sora 2 42.3, Stable
Video Diffusion 14.8) come from real videos of other scenes: the data differ.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from kinema.eval import metrics as M
from kinema.eval.data import heldout_seed
from kinema.eval.harness import describe_predictor, one_thread, request_from_episode
from kinema.eval.physics_alignment import CAMERAS, CLIP_FRAMES, CONDITIONS, SCENARIOS, open_run
from kinema.eval.plots import per_frame_curves
from kinema.eval.predictor import predict_checked
from kinema.eval.results import figure, fmt, markdown_table, mean_or_nan, write_json
from kinema.eval.simulator import SIGMA_V, SIGMA_W

BENCHMARK = "physics-iq"
KEYS = ("spatial_iou", "spatiotemporal_iou", "weighted_spatial_iou", "mse")
VARIANCE_TAKE = 1  # the take that measures physical variance; baseline:second_take predicts with take 2


def clip_scores(last_context: np.ndarray, pred: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """The four Physics-IQ metrics of a clip [Tf, H, W, 3] against the real one, after `last_context` [H, W, 3]."""
    with one_thread():
        mp = M.motion_masks(np.concatenate([last_context[None], pred]))[1:]
        mr = M.motion_masks(np.concatenate([last_context[None], real]))[1:]
        st = M.spatiotemporal_iou(mp, mr)
        return dict(
            spatial_iou=M.spatial_iou(mp, mr).value,
            spatiotemporal_iou=st.value,
            weighted_spatial_iou=M.weighted_spatial_iou(mp, mr).value,
            mse=M.physics_iq_mse(pred, real).value,
            iou_per_frame=list(st.per_frame),
        )


def run(predictor, out, *, n: int = 10, scenarios=SCENARIOS, conditions=CONDITIONS, cameras=CAMERAS,
        size: int = 64, progress: bool = True) -> dict:
    """Evaluate `predictor`; results go to <out>/physics-iq/<predictor.name>/. Returns the summary."""
    (n, scenarios, conditions, cameras, size), folder, log, cache = open_run(
        BENCHMARK, predictor, out, n, scenarios, conditions, cameras, size,
        variance_take=dict(take=VARIANCE_TAKE, sigma_v=SIGMA_V, sigma_w=SIGMA_W))
    units = [(sc, i, c, cam) for sc in scenarios for i in range(n) for c in conditions for cam in cameras]
    for sc, i, condition, cam in tqdm(units, desc=f"physics-iq {predictor.name}", unit="clip", disable=not progress):
        key = f"{sc}/{i}/{condition}/{cam}"
        if key in log:
            continue
        ep = cache.get(sc, heldout_seed(i), size=size, frames=CLIP_FRAMES)
        take2 = cache.get(sc, heldout_seed(i), size=size, frames=CLIP_FRAMES, take=VARIANCE_TAKE)
        req = request_from_episode(ep, cam, context=condition, future=CLIP_FRAMES - condition, with_actions=False)
        pred = predict_checked(predictor, req)
        real = ep.frames[cam][condition:CLIP_FRAMES]
        model = clip_scores(req.context[-1], pred, real)
        variance = clip_scores(take2.frames[cam][condition - 1], take2.frames[cam][condition:CLIP_FRAMES], real)
        log.add(dict(key=key, scenario=sc, index=i, seed=ep.seed, condition=condition, camera=cam, model=model,
                     variance=variance))
    records = [r for r in log.values() if r["scenario"] in scenarios and r["index"] < n and r["camera"] in cameras
               and r["condition"] in conditions]
    summary = summarize(records, predictor, scenarios, conditions, n, size)
    write_json(folder / "summary.json", summary)
    (folder / "table.md").write_text(table(summary))
    _plot(folder, records, scenarios, conditions)
    return summary


def _plot(folder, records, scenarios, conditions):
    """Per-frame IoU of motion masks by scenario: the prediction's and the second take's, each condition."""
    curves = {}
    for sc in scenarios:
        curves[sc] = {}
        for c in conditions:
            for who, label in (("model", "prediction"), ("variance", "second take")):
                rs = [r[who]["iou_per_frame"] for r in records if r["scenario"] == sc and r["condition"] == c]
                if rs:
                    curves[sc][f"{label}, {c} ctx"] = (list(range(c, CLIP_FRAMES)), list(np.mean(rs, axis=0)))
    per_frame_curves(folder / "motion_iou_per_frame.png", curves, "motion-mask IoU",
                     "IoU of Physics-IQ motion masks per predicted frame, mean over rollouts and views")


def _aggregate(records) -> dict:
    model = {k: mean_or_nan(r["model"][k] for r in records) for k in KEYS}
    variance = {k: mean_or_nan(r["variance"][k] for r in records) for k in KEYS}
    score = M.physics_iq_score(model, variance)
    return dict(
        score=figure(score.value, score.convention, clips=len(records)),
        model={k: figure(v, f"mean over clips of the prediction's {k} against the simulator") for k, v in model.items()},
        variance={k: figure(v, f"mean over clips of the second take's {k} against the simulator (physical variance)")
                  for k, v in variance.items()},
    )


def summarize(records, predictor, scenarios, conditions, n, size) -> dict:
    by = {c: [r for r in records if r["condition"] == c] for c in conditions}
    return dict(
        benchmark=BENCHMARK, predictor=describe_predictor(predictor), n=n, size=size, conditions=list(conditions),
        clip_frames=CLIP_FRAMES, scenarios=list(scenarios),
        masks=(M.motion_masks.__doc__ or "").split("\n")[0] + "; on the last context frame + predicted frames, "
              "the first (empty) mask dropped",
        per_scenario={str(c): {sc: _aggregate([r for r in by[c] if r["scenario"] == sc]) for sc in scenarios}
                      for c in conditions},
        overall={str(c): _aggregate(by[c]) for c in conditions},
        published=dict(best=62.6, sora_2=42.3, stable_video_diffusion=14.8,
                       note="Physics-IQ on real videos of its own scenes (REFERENCE §7): the data differ"),
    )


def table(summary: dict) -> str:
    header = ["context", "scenario", "Physics-IQ score", "spatial IoU", "spatiotemporal IoU", "weighted spatial IoU",
              "MSE", "variance: sIoU / stIoU / wsIoU / MSE"]
    rows = []
    for c in summary["conditions"]:
        for sc in summary["scenarios"] + ["**all**"]:
            d = summary["overall"][str(c)] if sc == "**all**" else summary["per_scenario"][str(c)][sc]
            m, v = d["model"], d["variance"]
            rows.append([c, sc, fmt(d["score"]["value"], 1)]
                        + [fmt(m[k]["value"], 4 if k == "mse" else 3) for k in KEYS]
                        + [" / ".join(fmt(v[k]["value"], 4 if k == "mse" else 3) for k in KEYS)])
    p = summary["predictor"]
    return (f"### Physics-IQ-style score: {p['name']}{' (oracle)' if p['oracle'] else ''}, "
            f"N={summary['n']} rollouts x 4 views\n\n" + markdown_table(header, rows))
