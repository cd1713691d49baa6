"""Benchmark 3, action-conditioned prediction: do the actions steer the prediction, and can they be read back?

Legend: T = clip frames (33), Tc context frames (9), Tf = T - Tc, A action dims, H height, W width.

On the manipulation worlds (push, pick_place, stack: scripted-expert episodes
of 97 frames) and the camera-motion world (33 frames), N held-out episodes
each. Per episode one clip of T frames, starting at a frame drawn from the
episode's seed (so clips cover every phase of a task).

Forward dynamics (predictors with `predict`): from the first Tc frames and the
clip's actions, predict the other Tf frames of each camera, once with the true
actions and once with *shuffled* ones: the actions of a different held-out
episode of the same world over the same frames (episode i takes those of
episode i XOR 1). PSNR, SSIM and, given a tokenizer checkpoint, latent L2
against the true future. A model that uses its actions scores clearly better
with the true ones; a baseline that ignores them (copy_last, zero_motion,
linear) scores the same twice, which is the reference for "no action use".
A sampling predictor (one with a `seed`) draws one prediction per clip by
default; with samples = K it draws K (seeds seed .. seed + K - 1, the same K for
the true and the shuffled actions) and scores their mean metric, the expected
score of one sample: a diffusion sample's PSNR can swing by several dB from one
seed to the next, which one draw per clip passes into the gap. The gap's
standard error and "true wins" count episodes, each the mean of its cameras'
gaps: the views of one rollout share its actions and its noise.

Inverse dynamics (predictors with `infer_actions`): from all T frames of a
camera, read back the T - 1 actions the frames determine
(kinema.eval.predictor.inverse_dynamics_targets). Mean squared error per
action group (translation, rotation 6D, gripper) against the truth, next to the
error of the mean-action baseline (kinema.eval.baselines.MeanAction), which
every row is also divided by.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from kinema.eval import metrics as M
from kinema.eval.baselines import MEAN_ACTION_EPISODES, MeanAction
from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.eval.harness import (action_timing, check_positive, check_size, check_subset, describe_predictor,
                                 one_thread, request_from_episode, run_dir)
from kinema.eval.plots import per_frame_curves
from kinema.eval.predictor import infer_checked, inverse_dynamics_targets, predict_checked
from kinema.eval.results import ResultLog, check_run, figure, fmt, markdown_table, mean_or_nan, write_json
from kinema.worlds.preview import contact_sheet, write_png

SCENARIOS = ("push", "pick_place", "stack", "camera_motion")
BENCHMARK = "actions"
CLIP_FRAMES = 33
CONTEXT = 9
# column ranges of the action groups (kinema.worlds.tabletop.ACTION_NAMES, camera_motion.POSE_NAMES)
GROUPS = {"after": {"translation": (0, 3), "rotation": (3, 9), "gripper": (9, 10)},
          "at": {"translation": (0, 3), "rotation": (3, 9)}}
ERR_CONVENTION = ("mean squared error over the clip's T-1 determined actions and the group's dimensions, in action "
                  "units (metres for translation deltas/poses, unitless rotation-6D entries, gripper closure in [0,1])")


def clip_start(ep, clip: int) -> int:
    """First frame of the evaluated clip: drawn from the episode's seed, so reruns pick the same one."""
    return int(np.random.default_rng([ep.seed, 5]).integers(0, ep.length - clip + 1))


def _forward_scores(pred, gt, tokenizer) -> dict:
    with one_thread():
        p = M.psnr(pred, gt)
        out = dict(psnr=p.value, ssim=M.ssim(pred, gt).value, psnr_per_frame=list(p.per_frame))
    if tokenizer is not None:
        from kinema.eval.latent import latent_l2

        out["latent_l2"] = latent_l2(tokenizer, pred, gt).value
    return out


def _errors(pred: np.ndarray, target: np.ndarray, timing: str) -> dict:
    return {g: float(((pred[:, a:b] - target[:, a:b]) ** 2).mean()) for g, (a, b) in GROUPS[timing].items()}


def result_name(predictor, samples: int = 1) -> str:
    """The results folder's name: runs with several samples per clip keep to their own."""
    return predictor.name + (f"_samples{samples}" if samples > 1 else "")


def _sampled_scores(predictor, req, gt, tokenizer, samples: int) -> dict:
    """Scores of `samples` predictions (seeds seed .. seed + samples - 1), averaged; each draw's PSNR kept."""
    if samples == 1:
        return _forward_scores(predict_checked(predictor, req), gt, tokenizer)
    base = predictor.seed
    draws = []
    try:
        for j in range(samples):
            predictor.seed = base + j
            draws.append(_forward_scores(predict_checked(predictor, req), gt, tokenizer))
    finally:
        predictor.seed = base
    out = {m: float(np.mean([d[m] for d in draws])) for m in draws[0] if m != "psnr_per_frame"}
    out["psnr_per_frame"] = list(np.mean([d["psnr_per_frame"] for d in draws], 0))
    out["psnr_samples"] = [d["psnr"] for d in draws]
    return out


def run(predictor, out, *, n: int = 10, scenarios=SCENARIOS, context: int = CONTEXT, clip: int = CLIP_FRAMES,
        size: int = 64, tokenizer: str | None = None, mean_episodes: int = MEAN_ACTION_EPISODES,
        samples: int = 1, progress: bool = True) -> dict:
    """Evaluate `predictor`; results go to <out>/actions/<predictor.name>/ (<name>_samplesK with samples K > 1).
    Returns the summary.

    mean_episodes: training episodes the mean-action reference is averaged over.
    samples: forward-dynamics predictions per clip and actions, for a predictor that samples (module docstring)."""
    n, size, samples = check_positive("--n", n), check_size(size), check_positive("--samples", samples)
    scenarios = check_subset("--scenarios", scenarios, SCENARIOS)
    if not 1 <= context < clip or clip > CLIP_FRAMES:
        raise ValueError(f"context and clip: expected 1 <= context < clip <= {CLIP_FRAMES}, got {context} and {clip}")
    forward, inverse = hasattr(predictor, "predict"), hasattr(predictor, "infer_actions")
    if not (forward or inverse):
        raise ValueError(f"predictor {predictor.name!r} has neither predict (forward dynamics) nor infer_actions "
                         "(inverse dynamics)")
    if samples > 1 and not (forward and isinstance(getattr(predictor, "seed", None), int)):
        raise ValueError(f"--samples {samples}: predictor {predictor.name!r} does not sample forward-dynamics "
                         "predictions from a seed, so every draw would be the same; use --samples 1")
    tok = None
    if tokenizer is not None and forward:
        from kinema.eval.latent import load_tokenizer

        tok = load_tokenizer(tokenizer)
    folder = run_dir(out, BENCHMARK, result_name(predictor, samples))
    settings = dict(benchmark=BENCHMARK, predictor=describe_predictor(predictor), n=n, scenarios=scenarios,
                    context=context, clip=clip, size=size, mean_episodes=mean_episodes,
                    tokenizer=str(tokenizer) if tokenizer else None)
    check_run(folder, settings if samples == 1 else dict(settings, samples=samples))
    log = ResultLog(folder / "results.jsonl")
    cache = EpisodeCache(folder.parent.parent / "cache")
    # the mean-action baseline evaluated as a predictor is its own reference
    reference = predictor if isinstance(predictor, MeanAction) else MeanAction(mean_episodes)
    units = [(sc, i) for sc in scenarios for i in range(n)]
    for sc, i in tqdm(units, desc=f"actions {predictor.name}", unit="episode", disable=not progress):
        key = f"{sc}/{i}"
        if key in log:
            continue
        ep = cache.get(sc, heldout_seed(i), size=size)
        donor = cache.get(sc, heldout_seed(i ^ 1), size=size)
        start = clip_start(ep, clip)
        sl = slice(start, start + clip)
        timing = action_timing(ep)
        rec = dict(key=key, scenario=sc, index=i, seed=ep.seed, donor_seed=donor.seed, start=start, forward={},
                   inverse={})
        for cam in ep.cameras:
            if forward:
                gt = ep.frames[cam][start + context : start + clip]
                rec["forward"][cam] = {}
                for mode, acts in (("true", ep.action[sl]), ("shuffled", donor.action[sl])):
                    req = request_from_episode(ep, cam, context=context, future=clip - context, start=start,
                                               actions=acts)
                    rec["forward"][cam][mode] = _sampled_scores(predictor, req, gt, tok, samples)
            if inverse:
                req = request_from_episode(ep, cam, context=clip, future=0, start=start, with_actions=False)
                target = inverse_dynamics_targets(ep.action[sl], timing)
                rec["inverse"][cam] = dict(model=_errors(infer_checked(predictor, req), target, timing),
                                           mean_action=_errors(reference.infer_actions(req), target, timing))
        log.add(rec)
    records = [r for r in log.values() if r["scenario"] in scenarios and r["index"] < n]
    summary = summarize(records, predictor, scenarios, n, size, context, clip, forward, inverse, tok is not None,
                        samples)
    write_json(folder / "summary.json", summary)
    (folder / "table.md").write_text(table(summary))
    if forward:
        _plot(folder, records, scenarios, context, clip)
        _sheet(folder, records, predictor, cache, size, context, clip)
    return summary


def summarize(records, predictor, scenarios, n, size, context, clip, forward, inverse, latent, samples=1) -> dict:
    z = np.zeros((1, 8, 8, 3))  # any frames: only the metrics' own convention strings are wanted here
    psnr_c, ssim_c = M.psnr(z, z).convention, M.ssim(z, z).convention
    out = dict(benchmark=BENCHMARK, predictor=describe_predictor(predictor), n=n, size=size, context=context,
               clip=clip, scenarios=list(scenarios), forward=None, inverse=None, samples=samples,
               shuffled="the actions of held-out episode i XOR 1 of the same world, same frames")
    if not latent and forward:
        out["latent_note"] = "latent L2 skipped: no --tokenizer checkpoint given"
    if forward:
        metrics = {"psnr": psnr_c, "ssim": ssim_c}
        if latent:
            metrics["latent_l2"] = "RMS difference of video-tokenizer latents of the predicted and true clip"
        fw = {}
        for sc in scenarios:
            rs = [r for r in records if r["scenario"] == sc]
            fw[sc] = {}
            for m, conv in metrics.items():
                for mode in ("true", "shuffled"):
                    vals = [c[mode][m] for r in rs for c in r["forward"].values()]
                    fw[sc][f"{m}_{mode}"] = figure(mean_or_nan(vals), f"{conv}; {mode} actions; mean over "
                                                   "episodes x cameras", clips=len(vals))
                # paired per episode (its cameras' mean: one rollout's views share its actions and noise, so
                # they are not independent): the gap's standard error and how often true wins
                diffs = np.array([mean_or_nan(c["true"][m] - c["shuffled"][m] for c in r["forward"].values()
                                              if c["true"][m] is not None and c["shuffled"][m] is not None)
                                  for r in rs], dtype=float)
                diffs = diffs[np.isfinite(diffs)]
                se = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else float("nan")
                better = diffs < 0 if m == "latent_l2" else diffs > 0
                fw[sc][f"{m}_gap"] = figure(fw[sc][f"{m}_true"]["value"] - fw[sc][f"{m}_shuffled"]["value"],
                                            f"{m} with true actions minus with shuffled ones (higher PSNR/SSIM, "
                                            "lower latent L2 is better: a positive PSNR gap means the actions help); "
                                            "se and true_wins over episodes, each the mean of its cameras' gaps",
                                            se=se, true_wins=float(better.mean()) if len(diffs) else float("nan"),
                                            episodes=int(len(diffs)))
        out["forward"] = fw
    if inverse:
        inv = {}
        for sc in scenarios:
            rs = [c for r in records if r["scenario"] == sc for c in r["inverse"].values()]
            if not rs:
                continue
            inv[sc] = {}
            for g in rs[0]["model"]:
                model = mean_or_nan(c["model"][g] for c in rs)
                base = mean_or_nan(c["mean_action"][g] for c in rs)
                inv[sc][g] = dict(
                    mse=figure(model, ERR_CONVENTION + "; mean over episodes x cameras", clips=len(rs)),
                    mean_action_mse=figure(base, "the same for the mean-action baseline (training-set mean)"),
                    ratio=figure(model / base if base > 0 else float("nan"),
                                 "model MSE / mean-action MSE: below 1 beats the baseline"),
                )
        out["inverse"] = inv
    return out


def table(summary: dict) -> str:
    p = summary["predictor"]
    parts = [f"### Action-conditioned prediction: {p['name']}{' (oracle)' if p['oracle'] else ''}, "
             f"N={summary['n']} episodes, {summary['context']} context frames of {summary['clip']}"
             + (f", forward dynamics scored as the mean of {summary['samples']} samples per clip"
                if summary.get("samples", 1) > 1 else "") + "\n"]
    if summary["forward"]:
        fw = summary["forward"]
        lat = any("latent_l2_true" in d for d in fw.values())
        header = ["world", "PSNR true", "PSNR shuffled", "PSNR gap ± s.e. (episodes)", "true wins (episodes)", "SSIM true", "SSIM shuffled"]
        header += ["latent L2 true", "latent L2 shuffled"] if lat else []
        rows = []
        for sc, d in fw.items():
            row = [sc, fmt(d["psnr_true"]["value"], 2), fmt(d["psnr_shuffled"]["value"], 2),
                   f"{fmt(d['psnr_gap']['value'], 2)} ± {fmt(d['psnr_gap'].get('se'), 2)}",
                   fmt(d["psnr_gap"].get("true_wins"), 2), fmt(d["ssim_true"]["value"]), fmt(d["ssim_shuffled"]["value"])]
            if lat:
                row += [fmt(d["latent_l2_true"]["value"], 4), fmt(d["latent_l2_shuffled"]["value"], 4)]
            rows.append(row)
        parts.append("Forward dynamics:\n\n" + markdown_table(header, rows))
        if summary.get("latent_note"):
            parts.append(f"({summary['latent_note']})\n")
    if summary["inverse"]:
        rows = []
        for sc, groups in summary["inverse"].items():
            for g, d in groups.items():
                rows.append([sc, g, _sci(d["mse"]["value"]), _sci(d["mean_action_mse"]["value"]),
                             fmt(d["ratio"]["value"], 3)])
        parts.append("Inverse dynamics (MSE per action group):\n\n"
                     + markdown_table(["world", "group", "MSE", "mean-action MSE", "ratio"], rows))
    return "\n".join(parts)


def _sheet(folder, records, predictor, cache, size, context, clip, k: int = 2):
    """The k worst and k best clips by PSNR with the true actions: truth, true-action and shuffled-action predictions."""
    clips = sorted(((c["true"]["psnr"], r, cam) for r in records for cam, c in r["forward"].items()),
                   key=lambda x: x[0])
    chosen = [(f"worst{j + 1}", x) for j, x in enumerate(clips[:k])] + \
             [(f"best{j + 1}", x) for j, x in enumerate(clips[::-1][:k])]
    rows, legend = [], []
    for tag, (psnr, r, cam) in chosen:
        ep = cache.get(r["scenario"], r["seed"], size=size)
        donor = cache.get(r["scenario"], r["donor_seed"], size=size)
        sl = slice(r["start"], r["start"] + clip)
        gt = ep.frames[cam][sl]
        preds = []
        for acts in (ep.action[sl], donor.action[sl]):
            req = request_from_episode(ep, cam, context=context, future=clip - context, start=r["start"], actions=acts)
            preds.append(np.concatenate([gt[:context], predict_checked(predictor, req)]))
        rows += [(f"{tag} GT", gt), (f"{tag} true a", preds[0]), (f"{tag} shuf a", preds[1])]
        legend.append(f"{tag}: {r['scenario']} episode {r['index']} (seed {r['seed']}), camera {cam}, frames "
                      f"{r['start']}..{r['start'] + clip - 1}, PSNR {psnr:.2f} dB with the true actions")
    write_png(folder / "best_worst.png", contact_sheet(rows, columns=8, scale=2))
    (folder / "best_worst.txt").write_text("Rows of best_worst.png (truth, prediction with the true actions, with "
                                           "shuffled actions; context frames shown as given):\n" + "\n".join(legend) + "\n")


def _sci(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.2e}"


def _plot(folder, records, scenarios, context, clip):
    curves = {}
    for sc in scenarios:
        curves[sc] = {}
        for mode in ("true", "shuffled"):
            rs = [c[mode]["psnr_per_frame"] for r in records if r["scenario"] == sc for c in r["forward"].values()]
            if rs:
                curves[sc][f"{mode} actions"] = (list(range(context, clip)), list(np.mean(rs, axis=0)))
    per_frame_curves(folder / "psnr_per_frame.png", curves, "PSNR (dB)",
                     "PSNR per predicted frame (index in the clip), true vs shuffled actions")
