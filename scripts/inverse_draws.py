"""How many one-step draws the world model's inverse-dynamics estimate should average.

Legend: K draws, T clip frames, A action dims.

The predictor (kinema.model.predictor.WorldModelPredictor.infer_actions) answers with the mean of K one-step x0
predictions from noise seeds 0..K-1. This script stores every draw of every held-out clip (the clips of `kinema
eval actions`: same episodes, same clip start, every camera), one npz an episode, resumable, then scores the mean
of the first K draws for several K on any range of episodes against the mean action, per action group, with a
bootstrap over episodes:

  python scripts/inverse_draws.py draw --episodes 0:30 --draws 32
  python scripts/inverse_draws.py score --episodes 30:90 --k 4,16
  python scripts/inverse_draws.py time --k 16     # the estimate's seconds a clip, against K separate samples
  python scripts/inverse_draws.py compare --out DRAWS_B --against DRAWS_A --episodes 450:540 --k 16
      # two models' draws on the same episodes: the paired difference of their raw ratios (B - A), episodes B won
  python scripts/inverse_draws.py spread --out DRAWS --episodes 0:300 --k 16
      # (calibration draws) would a line that shrinks by the draws' variance beat the plain one? halves: fit / score

The affine recalibration (kinema.model.calibration) is fit on the same clips of episodes from CALIBRATION_SEED,
which nothing trains on or evaluates, and scored beside the raw estimate:

  python scripts/inverse_draws.py draw --set calibration --episodes 0:300 --draws 16 --out outputs/inverse-calib
  python scripts/inverse_draws.py fit --out outputs/inverse-calib --episodes 0:300 --k 16 \
      --keep-raw single_arm:translation,single_arm:gripper \
      --calibration checkpoints/world-model-small/inverse_dynamics_calibration.json
  python scripts/inverse_draws.py score --episodes 270:360 --k 16 --calibration checkpoints/world-model-small/inverse_dynamics_calibration.json
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kinema.eval.actions import GROUPS, SCENARIOS, clip_start
from kinema.eval.baselines import MeanAction
from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.model.calibration import CALIBRATION_SEED, ActionCalibration
from kinema.eval.harness import action_timing, request_from_episode
from kinema.eval.predictor import inverse_dynamics_targets
from kinema.model.predictor import load_predictor
from kinema.worlds.generate import episode_seed

CLIP = 33


def _range(text: str) -> range:
    lo, hi = (int(x) for x in text.split(":"))
    if not 0 <= lo < hi:
        raise ValueError(f"--episodes: expected LO:HI with 0 <= LO < HI, got {text!r}")
    return range(lo, hi)


def _seed(args, i: int) -> int:
    return heldout_seed(i) if args.set == "heldout" else episode_seed(CALIBRATION_SEED, i)


def draw(args):
    pred = load_predictor(Path(args.model), device="cpu", calibrated=False)
    cache = EpisodeCache(Path(args.cache))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    units = [(sc, i) for sc in args.scenarios.split(",") for i in _range(args.episodes)]
    for sc, i in tqdm(units, desc="inverse draws", unit="episode"):
        path = out / f"{sc}_{i}.npz"
        if path.exists():
            continue
        ep = cache.get(sc, _seed(args, i), size=64)
        start, timing = clip_start(ep, CLIP), action_timing(ep)
        arrays = dict(target=inverse_dynamics_targets(ep.action[start : start + CLIP], timing), timing=timing,
                      cams=np.array(ep.cameras))
        for cam in ep.cameras:
            req = request_from_episode(ep, cam, context=CLIP, future=0, start=start, with_actions=False)
            arrays[f"draws/{cam}"] = pred.action_draws(req, args.draws)  # [K, T-1, A], seed k: the k-th draw
            arrays[f"embodiment/{cam}"] = np.array(pred.embodiment(req))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)


def _clips(out: str, scenarios: str, episodes: str, k: int):
    """(scenario, episode, embodiment, timing, estimate [T-1, A], target [T-1, A]) for every stored clip: the mean
    of its first k draws."""
    for sc in scenarios.split(","):
        for i in _range(episodes):
            z = np.load(Path(out) / f"{sc}_{i}.npz")
            for cam in z["cams"]:
                d = z[f"draws/{cam}"]
                if k > len(d):
                    raise ValueError(f"--k {k}: {sc} episode {i} has {len(d)} draws")
                yield sc, i, str(z[f"embodiment/{cam}"]), str(z["timing"]), d[:k].mean(0), z["target"]


def fit(args):
    if not args.calibration:
        raise ValueError("fit: --calibration FILE (where to write the fit) is required")
    k = int(args.k.split(",")[-1])
    pairs: dict[str, tuple[list, list]] = {}
    timings = {}
    for _, _, emb, timing, est, target in _clips(args.out, args.scenarios, args.episodes, k):
        timings[emb] = timing
        pairs.setdefault(emb, ([], []))[0].append(est)
        pairs[emb][1].append(target)
    keep = {tuple(x.split(":")) for x in args.keep_raw.split(",")} if args.keep_raw else set()
    unknown = keep - {(emb, g) for emb, t in timings.items() for g in GROUPS[t]}
    if unknown:
        raise ValueError(f"--keep-raw: no such embodiment:group among these clips: {sorted(unknown)}")
    scale, offset, means = {}, {}, {}
    for emb, (est, target) in sorted(pairs.items()):
        s, o = ActionCalibration.line(np.concatenate(est), np.concatenate(target))
        for g, (a, b) in GROUPS[timings[emb]].items():
            if (emb, g) in keep:  # left as the model gives it
                s[a:b], o[a:b] = 1.0, 0.0
        scale[emb], offset[emb] = [round(float(v), 6) for v in s], [round(float(v), 6) for v in o]
        means[emb] = [round(float(v), 6) for v in np.concatenate(target).mean(0)]
        print(f"{emb}: {len(est)} clips, scale {np.round(s, 3).tolist()}")
    cal = ActionCalibration(scale, offset, fit=dict(
        command=f"scripts/inverse_draws.py fit --episodes {args.episodes} --scenarios {args.scenarios} --k {k}"
                + (f" --keep-raw {args.keep_raw}" if args.keep_raw else ""),
        seed=CALIBRATION_SEED, episodes=args.episodes, scenarios=args.scenarios, draws=k,
        model=str(args.model), target_mean=means))
    cal.save(Path(args.calibration))
    print(f"wrote {args.calibration}")


def score(args):
    ks = [int(k) for k in args.k.split(",")]
    cal = ActionCalibration.load(Path(args.calibration)) if args.calibration else None
    mean_action, rng = MeanAction(), np.random.default_rng(0)
    for sc in args.scenarios.split(","):
        model, base = {}, {}  # per episode, the mean of its cameras' squared errors
        for k in ks:
            for _, i, emb, timing, est, target in _clips(args.out, sc, args.episodes, k):
                m = mean_action.mean(sc, timing)
                variants = {f"K={k}": est} | ({f"K={k} cal": cal.apply(emb, est)} if cal else {})
                if cal and k == ks[0]:  # the calibration set's mean action: the best constant it could have fit
                    variants["cal mean"] = np.broadcast_to(np.float32(cal.fit["target_mean"][emb]), est.shape)
                for g, (a, b) in GROUPS[timing].items():
                    if k == ks[0]:
                        base.setdefault(g, {}).setdefault(i, ((m[a:b] - target[:, a:b]) ** 2).mean())
                    for name, e in variants.items():
                        model.setdefault((g, name), {}).setdefault(i, []).append(((e[:, a:b] - target[:, a:b]) ** 2).mean())
        n = len(_range(args.episodes))
        print(f"\n{sc}, episodes {args.episodes} ({n}): MSE / the mean action's [95% bootstrap over episodes], "
              "fraction of episodes where the model's error is lower")
        for g, per in base.items():
            b = np.array([per[i] for i in _range(args.episodes)])
            if b.sum() == 0:  # no ratio to give, but the model can still be wrong there: its MSE
                mse = ", ".join(f"{name} {np.mean([np.mean(errs[i]) for i in _range(args.episodes)]):.2e}"
                                for (g2, name), errs in model.items() if g2 == g)
                print(f"  {g}: the mean action is exact (the expert never uses it); model MSE {mse}")
                continue
            idx = rng.integers(0, n, (2000, n))
            for (g2, name), errs in model.items():
                if g2 != g:
                    continue
                e = np.array([np.mean(errs[i]) for i in _range(args.episodes)])
                lo, hi = np.percentile(e[idx].mean(1) / b[idx].mean(1), [2.5, 97.5])
                print(f"  {g:11s} {name:9s} {e.mean() / b.mean():.3f} [{lo:.3f}, {hi:.3f}]  wins {np.mean(e < b):.2f}")


def _errors(out: str, sc: str, episodes: str, k: int, cal: ActionCalibration | None = None) -> dict:
    """{group: (model's MSE [episodes], the mean action's [episodes])}, each episode the mean over its cameras; the
    estimate through `cal`'s line when given."""
    mean_action, per = MeanAction(), {}
    for _, i, emb, timing, est, target in _clips(out, sc, episodes, k):
        m, est = mean_action.mean(sc, timing), cal.apply(emb, est) if cal else est
        for g, (a, b) in GROUPS[timing].items():
            d = per.setdefault(g, {}).setdefault(i, ([], []))
            d[0].append(((est[:, a:b] - target[:, a:b]) ** 2).mean())
            d[1].append(((m[a:b] - target[:, a:b]) ** 2).mean())
    return {g: tuple(np.array([np.mean(d[i][j]) for i in _range(episodes)]) for j in (0, 1)) for g, d in per.items()}


def compare(args):
    if not args.against:
        raise ValueError("compare: --against DIR (the other model's draws on the same episodes) is required")
    if bool(args.calibration) != bool(args.against_calibration):
        raise ValueError("compare: give both models' lines (--calibration for --out's, --against-calibration for "
                         "--against's) or neither (raw)")
    cal_b, cal_a = (ActionCalibration.load(Path(c)) if c else None for c in (args.calibration, args.against_calibration))
    k, rng = int(args.k.split(",")[-1]), np.random.default_rng(0)
    n = len(_range(args.episodes))
    idx = rng.integers(0, n, (2000, n))
    print(f"{args.out} (B) against {args.against} (A), episodes {args.episodes}, K = {k}, "
          f"{'each through its own line' if cal_b else 'raw'}: MSE / the mean action's, A -> B, paired difference "
          "B - A [95% bootstrap over episodes], fraction of episodes B won")
    for sc in args.scenarios.split(","):
        new, old = _errors(args.out, sc, args.episodes, k, cal_b), _errors(args.against, sc, args.episodes, k, cal_a)
        for g, (b, base) in new.items():
            a = old[g][0]
            if base.sum() == 0:
                print(f"  {sc:13s} {g:11s} the mean action is exact: model MSE {a.mean():.2e} -> {b.mean():.2e}")
                continue
            lo, hi = np.percentile((b[idx].mean(1) - a[idx].mean(1)) / base[idx].mean(1), [2.5, 97.5])
            print(f"  {sc:13s} {g:11s} {a.mean() / base.mean():.3f} -> {b.mean() / base.mean():.3f}  "
                  f"{(b.mean() - a.mean()) / base.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]  won {np.mean(b < a):.2f}")


def spread(args):
    """Would the line gain from knowing how sure the draws are? On the arm's worlds' stored draws, split --episodes
    in halves: fit on the first, per dimension of the group, target = offset + scale * (estimate - mean) / (1 + c *
    the variance of the k draws), for several c (c = 0: the plain line); score the second half per world, MSE / the
    fit half's mean action's."""
    k, (lo, hi) = int(args.k.split(",")[-1]), map(int, args.episodes.split(":"))
    a, b = GROUPS["after"][args.group]
    worlds = [sc for sc in args.scenarios.split(",") if sc != "camera_motion"]
    rows = {}  # (world, first half?) -> (mean [N, d], variance [N, d], target [N, d]) over every clip's frames
    for sc in worlds:
        for i in range(lo, hi):
            z = np.load(Path(args.out) / f"{sc}_{i}.npz")
            for cam in z["cams"]:
                d = z[f"draws/{cam}"][:k, :, a:b]
                r = rows.setdefault((sc, i < (lo + hi) // 2), ([], [], []))
                for part, x in zip(r, (d.mean(0), d.var(0), z["target"][:, a:b])):
                    part.append(x)
    cat = {key: [np.concatenate(p) for p in r] for key, r in rows.items()}
    m, v, t = (np.concatenate([cat[(sc, True)][j] for sc in worlds]) for j in range(3))
    mu = t.mean(0)
    print(f"{args.group}, k = {k}: fit on episodes {lo}:{(lo + hi) // 2}, scored on {(lo + hi) // 2}:{hi}; "
          f"MSE / the mean action's per world ({', '.join(worlds)})")
    for c in (0, 10, 100, 300, 1000, 10000):
        x = (m - mu) / (1 + c * v)
        scale = ((x - x.mean(0)) * (t - t.mean(0))).sum(0) / ((x - x.mean(0)) ** 2).sum(0).clip(1e-12)
        offset = t.mean(0) - scale * x.mean(0)
        fit_err = ((offset + scale * x - t) ** 2).mean()
        ratios = []
        for sc in worlds:
            mm, vv, tt = cat[(sc, False)]
            ratios.append(((offset + scale * (mm - mu) / (1 + c * vv) - tt) ** 2).sum() / ((mu - tt) ** 2).sum())
        print(f"  c = {c:<6g} fit-half MSE {fit_err:.4e}   " + " / ".join(f"{r:.3f}" for r in ratios))


def timing(args):
    import statistics
    import time

    k = int(args.k.split(",")[-1])
    pred = load_predictor(Path(args.model), device="cpu", inverse_samples=k, calibrated=False)
    cache = EpisodeCache(Path(args.cache))
    pipe = pred.pipeline
    times = {"estimate": [], "separate": []}
    for sc in args.scenarios.split(","):
        ep = cache.get(sc, heldout_seed(0), size=64)
        req = request_from_episode(ep, ep.cameras[0], context=CLIP, future=0, start=clip_start(ep, CLIP),
                                   with_actions=False)
        name = pipe.config.embodiments[pipe._domain(None, tuple(req.action_names), None, req.action_timing)].name
        pred.infer_actions(req)  # warm-up
        for _ in range(5):
            t = time.perf_counter()
            a = pred.infer_actions(req)
            times["estimate"].append(time.perf_counter() - t)
            t = time.perf_counter()  # the same estimate as K separate inverse-dynamics calls, as before
            b = np.mean([pipe.run("inverse_dynamics", num_frames=CLIP, context=req.context, domain_name=name,
                                  prompt=req.prompt or "", fps=req.fps, num_steps=1, seed=i)["actions"]
                         for i in range(k)], 0)
            times["separate"].append(time.perf_counter() - t)
            assert np.array_equal(a, b), "the estimate differs from K separate samples"
    est, sep = statistics.median(times["estimate"]), statistics.median(times["separate"])
    print(f"K = {k}, median over 5 runs x {len(args.scenarios.split(','))} clips, {torch.get_num_threads()} threads: "
          f"{est:.3f} s a clip (one encoding and K/V cache, no frames decoded) against {sep:.3f} s as {k} separate "
          f"calls ({sep / est:.1f}x), the same actions to the bit")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("draw", "fit", "score", "compare", "spread", "time"))
    ap.add_argument("--episodes", default="0:30", help="episode indices LO:HI")
    ap.add_argument("--set", choices=("heldout", "calibration"), default="heldout",
                    help="draw: the evaluation's held-out episodes, or the calibration seed's")
    ap.add_argument("--calibration", help="fit: where to write it; score: score it beside the raw estimate; compare: --out's line")
    ap.add_argument("--against", help="compare: the other model's draws (the difference is --out's minus these)")
    ap.add_argument("--against-calibration", help="compare: --against's line (then --calibration is --out's)")
    ap.add_argument("--group", default="rotation", help="spread: the arm's action group to check")
    ap.add_argument("--keep-raw", default="", help="fit: EMBODIMENT:GROUP,... left raw (scale 1, offset 0)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--draws", type=int, default=32)
    ap.add_argument("--k", default="1,2,4,8,16,32", help="draws averaged, to score")
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--cache", default="outputs/eval/cache", help="held-out episodes (simulated when missing)")
    ap.add_argument("--out", default="outputs/inverse-draws")
    args = ap.parse_args()
    torch.set_num_threads(2)
    {"draw": draw, "fit": fit, "score": score, "compare": compare, "spread": spread, "time": timing}[args.command](args)


if __name__ == "__main__":
    main()
