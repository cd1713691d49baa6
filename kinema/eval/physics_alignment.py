"""Benchmark 1, physics alignment (the Cosmos 1 protocol): does the predicted future match the simulator's?

Legend: T = 33 clip frames, Tc context frames (1 or 9), Tf = T - Tc, H height, W width.

For each of the eight passive scenarios, N held-out rollouts (seeds from
kinema.eval.data), each seen by its 4 cameras: the predictor gets the first 1
or 9 frames (plus the caption and camera poses) and predicts the rest of the
33. Scored on the predicted frames only:

- PSNR and SSIM against the simulator's frames (kinema.eval.metrics conventions);
- object IoU between the simulator's masks and masks segmented from the
  prediction by colour (kinema.eval.segment, fitted on the context frames),
  over the objects that can move. The same segmenter applied to the
  simulator's own future frames gives `segmenter_gt_iou`, its validation (≈ 1).

Aggregates: mean over rollouts and cameras per scenario and condition, then
the unweighted mean over scenarios. Cosmos 1 reports on its own scenes (REFERENCE §8):
the data differ, so only the protocol is shared.
"""

from __future__ import annotations

import warnings

import numpy as np
from tqdm import tqdm

from kinema.eval import metrics as M
from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.eval.harness import (check_positive, check_size, check_subset, describe_predictor, one_thread,
                                 request_from_episode, run_dir)
from kinema.eval.plots import comparison_sheet, per_frame_curves
from kinema.eval.predictor import predict_all
from kinema.eval.results import ResultLog, check_run, figure, markdown_table, mean_or_nan, write_json, fmt
from kinema.eval.segment import ColourSegmenter, keep_ids, moving_ids

SCENARIOS = ("free_fall", "tilted_slope", "u_slope", "stable_stack", "unstable_stack", "dominoes", "seesaw", "gyroscope")
CAMERAS = ("front", "side", "oblique", "top")
CONDITIONS = (1, 9)
CLIP_FRAMES = 33
BENCHMARK = "physics"

IOU_CONVENTION = (
    "object IoU (kinema.eval.metrics.object_iou) over the objects that can move (kind dynamic, articulated or "
    "robot; static floor/ramp/track excluded), predicted masks from kinema.eval.segment.ColourSegmenter fitted "
    "on the context frames and their ground-truth masks (nearest shade by colour, brightness-invariant, "
    "background rejection); per rollout and camera over the predicted frames"
)


def score_prediction(pred: np.ndarray, gt: np.ndarray, context: np.ndarray, context_masks: np.ndarray,
                     gt_masks: np.ndarray, objects_info: list[dict]) -> dict:
    """Every physics-alignment figure of one predicted clip [Tf, H, W, 3] against its ground truth."""
    with one_thread():
        return _score(pred, gt, context, context_masks, gt_masks, objects_info)


def _score(pred, gt, context, context_masks, gt_masks, objects_info) -> dict:
    ids = moving_ids(objects_info)
    seg = ColourSegmenter.fit(context, context_masks, objects_info)
    target = keep_ids(gt_masks, ids)
    pred_masks = keep_ids(seg(pred), ids)
    gt_seg = keep_ids(seg(gt), ids)

    def iou_per_frame(m):
        return [M.object_iou(m[t : t + 1], target[t : t + 1], ids=ids).value for t in range(len(m))]

    p, s = M.psnr(pred, gt), M.ssim(pred, gt)
    return dict(
        psnr=p.value, ssim=s.value,
        iou=M.object_iou(pred_masks, target, ids=ids).value,
        segmenter_gt_iou=M.object_iou(gt_seg, target, ids=ids).value,
        psnr_per_frame=list(p.per_frame), iou_per_frame=iou_per_frame(pred_masks),
    )


def _units(ep, cams, cond, predictor) -> list[tuple[np.ndarray, dict]]:
    """Predict and score the views `cams` of one rollout (one batch for predictors that batch)."""
    reqs = [request_from_episode(ep, cam, context=cond, future=CLIP_FRAMES - cond, with_actions=False) for cam in cams]
    out = []
    for cam, req, pred in zip(cams, reqs, predict_all(predictor, reqs)):
        out.append((pred, score_prediction(pred, ep.frames[cam][cond:CLIP_FRAMES], req.context,
                                           req.oracle.context_masks, ep.masks[cam][cond:CLIP_FRAMES], ep.objects_info)))
    return out


def open_run(benchmark: str, predictor, out, n, scenarios, conditions, cameras, size, **settings):
    """Check the settings of a run on these rollouts (this benchmark's and Physics-IQ's) and open its folder
    <out>/<benchmark>/<predictor.name>/, refusing one that holds results made with other settings.

    settings: the benchmark's own, recorded with the shared ones.
    -> ((n, scenarios, conditions, cameras, size) checked, folder, its ResultLog, the shared EpisodeCache)
    """
    n, size = check_positive("--n", n), check_size(size)
    scenarios = check_subset("--scenarios", scenarios, SCENARIOS)
    cameras = check_subset("--cameras", cameras, CAMERAS)
    conditions = [int(c) for c in conditions]
    if not conditions or any(not 1 <= c < CLIP_FRAMES for c in conditions):
        raise ValueError(f"--conditions: expected context lengths in 1..{CLIP_FRAMES - 1}, got {conditions}")
    folder = run_dir(out, benchmark, predictor.name)
    check_run(folder, dict(benchmark=benchmark, predictor=describe_predictor(predictor), n=n, scenarios=scenarios,
                           conditions=conditions, cameras=cameras, size=size, clip_frames=CLIP_FRAMES, **settings))
    checked = (n, scenarios, conditions, cameras, size)
    return checked, folder, ResultLog(folder / "results.jsonl"), EpisodeCache(folder.parent.parent / "cache")


def run(predictor, out, *, n: int = 10, scenarios=SCENARIOS, conditions=CONDITIONS, cameras=CAMERAS,
        size: int = 64, progress: bool = True, sheets: bool = True) -> dict:
    """Evaluate `predictor`; results go to <out>/physics/<predictor.name>/. Returns the summary."""
    (n, scenarios, conditions, cameras, size), folder, log, cache = open_run(
        BENCHMARK, predictor, out, n, scenarios, conditions, cameras, size)
    units = [(sc, i, cond) for sc in scenarios for i in range(n) for cond in conditions]
    bar = tqdm(total=len(units) * len(cameras), desc=f"physics {predictor.name}", unit="clip", disable=not progress)
    for sc, i, cond in units:
        todo = [cam for cam in cameras if f"{sc}/{i}/{cond}/{cam}" not in log]
        if todo:
            ep = cache.get(sc, heldout_seed(i), size=size, frames=CLIP_FRAMES)
            for cam, (_, scores) in zip(todo, _units(ep, todo, cond, predictor)):
                log.add(dict(key=f"{sc}/{i}/{cond}/{cam}", scenario=sc, index=i, seed=ep.seed, condition=cond,
                             camera=cam, **scores))
        bar.update(len(cameras))
    bar.close()
    records = [r for r in log.values() if r["scenario"] in scenarios and r["index"] < n
               and r["condition"] in conditions and r["camera"] in cameras]
    summary = summarize(records, predictor, scenarios, conditions, n, size)
    write_json(folder / "summary.json", summary)
    (folder / "table.md").write_text(table(summary))
    _plots(folder, records, scenarios, conditions)
    if sheets:
        _sheets(folder, records, predictor, cache, size)
    return summary


def summarize(records, predictor, scenarios, conditions, n, size) -> dict:
    z = np.zeros((1, 8, 8, 3))  # any frames: only the metrics' own convention strings are wanted here
    conv = {
        "psnr": M.psnr(z, z).convention,
        "ssim": M.ssim(z, z).convention,
        "iou": IOU_CONVENTION,
        "segmenter_gt_iou": "the same segmenter applied to the simulator's own future frames: its validation, "
                            "1 = perfect; " + IOU_CONVENTION,
    }
    agg = "; mean over rollouts x cameras of the scenario (NaN IoU of clips with no visible moving object skipped)"
    per = {}
    for c in conditions:
        per[str(c)] = {}
        for sc in scenarios:
            rs = [r for r in records if r["scenario"] == sc and r["condition"] == c]
            per[str(c)][sc] = {k: figure(mean_or_nan(r[k] for r in rs), conv[k] + agg, clips=len(rs)) for k in conv}
    overall = {
        str(c): {k: figure(mean_or_nan(per[str(c)][sc][k]["value"] for sc in scenarios),
                           conv[k] + agg + "; then the unweighted mean over scenarios") for k in conv}
        for c in conditions
    }
    return dict(benchmark=BENCHMARK, predictor=describe_predictor(predictor), n=n, size=size,
                clip_frames=CLIP_FRAMES, scenarios=list(scenarios), conditions=list(conditions),
                per_scenario=per, overall=overall,
                data_note="kinema's simulated scenes (MuJoCo, 64x64 by default), not Cosmos 1's: compare the protocol, "
                          "not the numbers")


def table(summary: dict) -> str:
    header = ["scenario"] + [f"{k} @{c}" for c in summary["conditions"] for k in ("PSNR", "SSIM", "IoU", "seg GT IoU")]
    rows = []
    for sc in summary["scenarios"] + ["**mean**"]:
        row = [sc]
        for c in summary["conditions"]:
            d = summary["overall"][str(c)] if sc == "**mean**" else summary["per_scenario"][str(c)][sc]
            row += [fmt(d["psnr"]["value"], 2), fmt(d["ssim"]["value"]), fmt(d["iou"]["value"]),
                    fmt(d["segmenter_gt_iou"]["value"])]
        rows.append(row)
    p = summary["predictor"]
    title = f"Physics alignment: {p['name']}{' (oracle)' if p['oracle'] else ''}, N={summary['n']} rollouts x 4 views"
    return f"### {title}\n\n" + markdown_table(header, rows)


def _plots(folder, records, scenarios, conditions):
    for metric, label in (("psnr", "PSNR (dB)"), ("iou", "object IoU")):
        curves = {}
        for sc in scenarios:
            curves[sc] = {}
            for c in conditions:
                rs = [[np.nan if v is None else v for v in r[f"{metric}_per_frame"]]
                      for r in records if r["scenario"] == sc and r["condition"] == c]
                if rs:
                    with warnings.catch_warnings():  # a frame with no visible mover in any clip is NaN
                        warnings.simplefilter("ignore", RuntimeWarning)
                        y = np.nanmean(np.array(rs, dtype=np.float64), axis=0)
                    curves[sc][f"{c} context frame{'s' if c > 1 else ''}"] = (list(range(c, CLIP_FRAMES)), list(y))
        per_frame_curves(folder / f"{metric}_per_frame.png", curves, label,
                         f"{label} per predicted frame, mean over rollouts and views")


def _sheets(folder, records, predictor, cache, size, k: int = 3):
    """Contact sheet of the k best and k worst clips by object IoU at the longest conditioning."""
    c = max(r["condition"] for r in records)
    rs = sorted((r for r in records if r["condition"] == c and r["iou"] is not None), key=lambda r: r["iou"])
    if not rs:
        return
    chosen = [(f"worst{j + 1}", r) for j, r in enumerate(rs[:k])] + [(f"best{j + 1}", r) for j, r in enumerate(rs[::-1][:k])]
    items, legend = [], []
    for tag, r in chosen:
        ep = cache.get(r["scenario"], r["seed"], size=size, frames=CLIP_FRAMES)
        [(pred, _)] = _units(ep, [r["camera"]], c, predictor)
        gt = ep.frames[r["camera"]][:CLIP_FRAMES]
        items.append((tag, gt, np.concatenate([gt[:c], pred])))
        legend.append(f"{tag}: {r['scenario']} rollout {r['index']} (seed {r['seed']}), camera {r['camera']}, "
                      f"{c} context frames, IoU {r['iou']:.3f}, PSNR {r['psnr']:.2f} dB")
    comparison_sheet(folder / "best_worst.png", items)
    (folder / "best_worst.txt").write_text("Rows of best_worst.png (ground truth, then context + prediction):\n"
                                           + "\n".join(legend) + "\n")
