"""Does text-to-video show what the prompt names? Colour segmentation of generated clips.

Legend: T frames, H, W pixels, K palette colours.

For held-out episodes of the passive worlds, the prompt is the episode's
caption, which names every object by colour ("the magenta box, the cyan
box, ..."); every object of a world has its own palette colour. A pixel shows
palette colour c when it is saturated and bright enough and its hue is nearest
to c's (within HUE_TOL degrees). Two checks, each over the clip's frames:

  colour   c is present when at least MIN_PIXELS pixels show it, anywhere, in
           at least half of the frames (scattered specks count).
  object   a named object is present when, in at least half of the frames, one
           8-connected region of its colour is about the size the simulator
           draws that object in the same episode and camera (SIZE_RANGE times
           the median of its largest region there, either way). An unnamed
           colour counts as an object when such a region, at the size of the
           episode's named objects, shows in half of the frames.

Which kind an object is (box, ball, cylinder) is not checked: at 64x64 the
simulator's own balls, boxes and cylinders are 20-90 pixel blobs whose fill of
their bounding box overlaps (0.76-0.82, 0.78-1.0, 0.67-0.93).

Reported per check: the share of named colours (objects) present (recall) and
the share of palette colours the prompt does not name that appear anyway (false
positives), for the model and, as the reference, for the simulator's own
frames of the same episodes (what a perfect generator would score).

With best_of N > 1 each caption's clip is the one of N draws the reasoner
critic keeps (kinema.model.critic); every draw is checked, so the same run also
reports the first draw alone (exactly the best_of 1 clip, paired per caption)
and an oracle: the draw with the most named objects present, which no critic
can beat (a ceiling, not a method: it reads the check itself).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from kinema.worlds.scene import CHROMATIC, PALETTE

HUES = np.array([colorsys.rgb_to_hsv(*PALETTE[c])[0] * 360 for c in CHROMATIC])  # degrees
HUE_TOL, MIN_SAT, MIN_VAL, MIN_PIXELS = 14.0, 0.35, 0.2, 6
SIZE_RANGE = 4.0  # an object's region may be this many times smaller or larger than the simulator draws it
SCENARIOS = ("free_fall", "stable_stack", "unstable_stack", "dominoes")
BENCHMARK = "text2video"


def colour_masks(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> bool [T, H, W, K]: which palette colour (CHROMATIC order) each pixel shows, if any."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV_FULL) for f in frames]).astype(np.float64)
    hue, sat, val = hsv[..., 0] * 360 / 256, hsv[..., 1] / 255, hsv[..., 2] / 255
    d = np.abs(hue[..., None] - HUES)
    d = np.minimum(d, 360 - d)  # [T, H, W, K] circular hue distance
    best = d.argmin(-1)
    ok = (np.take_along_axis(d, best[..., None], -1)[..., 0] <= HUE_TOL) & (sat >= MIN_SAT) & (val >= MIN_VAL)
    return (best[..., None] == np.arange(len(CHROMATIC))) & ok[..., None]


def colours_present(frames: np.ndarray) -> dict[str, bool]:
    """uint8 [T, H, W, 3] -> {palette colour: present}."""
    per_frame = colour_masks(frames).sum((1, 2))  # [T, K]
    return {c: bool((per_frame[:, k] >= MIN_PIXELS).mean() >= 0.5) for k, c in enumerate(CHROMATIC)}


def region_areas(frames: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> int [T, K]: pixels in the largest 8-connected region of each palette colour."""
    masks = colour_masks(frames)
    out = np.zeros(masks.shape[::3], np.int64)  # [T, K]
    for t, k in zip(*np.nonzero(masks.any((1, 2)))):
        n, _, stats, _ = cv2.connectedComponentsWithStats(masks[t, :, :, k].astype(np.uint8), connectivity=8)
        out[t, k] = stats[1:, cv2.CC_STAT_AREA].max()
    return out


def objects_present(frames: np.ndarray, sizes: dict[str, float]) -> dict[str, bool]:
    """uint8 [T, H, W, 3], {palette colour: expected region area in pixels} -> {palette colour: an object of
    about that size shows in at least half of the frames}. Colours not in `sizes` are not reported."""
    areas = region_areas(frames)
    out = {}
    for c, a in sizes.items():
        x = areas[:, CHROMATIC.index(c)]
        out[c] = bool(((x >= a / SIZE_RANGE) & (x <= a * SIZE_RANGE)).mean() >= 0.5)
    return out


def reference_sizes(frames: np.ndarray, named: set) -> dict[str, float]:
    """The simulator's frames uint8 [T, H, W, 3] -> {colour: expected area} for every palette colour: a named
    colour's median largest region over the frames that show it; an unnamed one, the median of the named ones
    (what an object of this world would cover). Named colours the simulator never shows are left out."""
    areas = region_areas(frames)
    sizes = {}
    for c in named:
        x = areas[:, CHROMATIC.index(c)]
        if (x > 0).any():
            sizes[c] = float(np.median(x[x > 0]))
    typical = float(np.median(list(sizes.values()))) if sizes else float(MIN_PIXELS * SIZE_RANGE)
    return {**sizes, **{c: typical for c in CHROMATIC if c not in named}}


def _score(present: dict, named: set) -> tuple[float, float]:
    """-> (share of the named colours present, share of the unnamed ones present), over the colours `present`
    reports. Their difference, paired per clip (the "_gap" figures), is how far the prompt steers."""
    named = [c for c in named if c in present]
    unnamed = [c for c in present if c not in named]
    recall = np.mean([present[c] for c in named]) if named else np.nan
    false_pos = np.mean([present[c] for c in unnamed]) if unnamed else np.nan
    return float(recall), float(false_pos)


def _se(rows: list, key: str, j: int) -> float:
    """Standard error over clips of score j (0 named, 1 unnamed); clips vary far more than seeds do."""
    x = np.array([r[key][j] for r in rows], dtype=float)
    x = x[~np.isnan(x)]
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _checks(frames: np.ndarray, sizes: dict, named: set) -> dict:
    """uint8 [T, H, W, 3] -> {"model": colour scores, "model_objects": object scores} (_score's pairs)."""
    return dict(model=_score(colours_present(frames), named),
                model_objects=_score(objects_present(frames, sizes), named))


def _summarise(rows: list, key: str) -> dict:
    """Rows' score pairs under `key` -> {key: (recall, fp) means, key_se, key_gap: (mean, s.e.) paired per clip}."""
    r = {key: tuple(float(np.nanmean([row[key][j] for row in rows])) for j in (0, 1)),
         f"{key}_se": (_se(rows, key, 0), _se(rows, key, 1))}
    r[f"{key}_gap"] = _mean_se([row[key][0] - row[key][1] for row in rows])
    return r


def _mean_se(x) -> tuple[float, float]:
    x = np.array(x, dtype=float)
    x = x[~np.isnan(x)]
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def text_to_video(pipeline, out, *, n: int = 10, scenarios=SCENARIOS, camera: str = "front", num_steps: int = 20,
                  guidance: float = 3.0, shift: float | None = None, seed: int = 0, progress: bool = True,
                  name: str = "world_model", cache=None, best_of: int = 1, first: int = 0) -> dict:
    """Generate from each held-out caption; -> {"benchmark", "predictor": {"name", "oracle"}, "n": clips, "rows":
    [...], "model": (recall, fp), "model_se": standard errors, "model_gap": (mean, s.e.) of recall - fp paired per
    clip, "simulator": (recall, fp), "simulator_gap", and the same of the object check under "model_objects",
    "model_objects_se", "model_objects_gap", "simulator_objects", "simulator_objects_gap"}. With best_of > 1 also
    "first"/"first_objects" (the first draw's) and "oracle"/"oracle_objects" (the same keys), and "critic_gain" /
    "critic_gain_objects": (mean, s.e.) of the kept clip's named recall minus the first draw's, paired per clip;
    each row then also has every draw's checks ("draws") and critic scores ("critic"), so fewer draws can be
    scored from the same run (the first k: what best_of k would have drawn).
    shift: the sampler's time shift (None: the pipeline's default for the frame size). cache: the folder of
    simulated held-out episodes (out/cache). first: the first held-out episode of each world (episodes first ..
    first + n - 1, each with the seed it has in a run from 0: a disjoint set for choosing settings)."""
    from kinema.eval.data import EpisodeCache, heldout_seed
    from kinema.model.critic import best_of as draw_best
    from kinema.worlds.preview import contact_sheet, write_png

    out = Path(out)
    cache = EpisodeCache(out / "cache" if cache is None else cache)
    rows, sheet = [], []
    jobs = [(s, i) for s in scenarios for i in range(first, first + n)]
    for scenario, i in tqdm(jobs, desc="text2video", disable=not progress):
        ep = cache.get(scenario, heldout_seed(i))
        named = {o["colour"] for o in ep.objects_info if o.get("colour") in CHROMATIC and o["colour"] in ep.caption}
        outs, critic, kept = draw_best(pipeline, "text2video", best_of, prompt=ep.caption, num_frames=33,
                                       num_steps=num_steps, guidance=guidance, shift=shift, seed=seed + i)
        sim = ep.frames[camera]
        sizes = reference_sizes(sim, named)
        drawn = [_checks(o["frames"], sizes, named) for o in outs]
        row = dict(scenario=scenario, seed=heldout_seed(i), named=sorted(named),
                   sizes={c: sizes[c] for c in sorted(named) if c in sizes}, **drawn[kept],
                   simulator=_score(colours_present(sim), named),
                   simulator_objects=_score(objects_present(sim, sizes), named))
        if best_of > 1:
            best = max(range(best_of), key=lambda k: np.nan_to_num(drawn[k]["model_objects"][0], nan=-1.0))
            row.update(critic=critic, kept=kept, first=drawn[0]["model"], first_objects=drawn[0]["model_objects"],
                       oracle=drawn[best]["model"], oracle_objects=drawn[best]["model_objects"], draws=drawn)
        rows.append(row)
        if i < first + 2:
            sheet += [(f"{scenario} sim", sim), (f"{scenario} model", outs[kept]["frames"])]
    write_png(out / "text2video.png", contact_sheet(sheet, columns=6, scale=2))
    r = dict(benchmark=BENCHMARK, predictor={"name": name, "oracle": False}, n=len(rows), rows=rows)
    keys = ["model", "simulator", "model_objects", "simulator_objects"]
    keys += ["first", "first_objects", "oracle", "oracle_objects"] if best_of > 1 else []
    for key in keys:
        r.update(_summarise(rows, key))
    if best_of > 1:
        r["critic_gain"] = _mean_se([row["model"][0] - row["first"][0] for row in rows])
        r["critic_gain_objects"] = _mean_se([row["model_objects"][0] - row["first_objects"][0] for row in rows])
    return dict(**r, sheet=str(out / "text2video.png"),
                settings=dict(n=n, first=first, scenarios=list(scenarios), camera=camera, num_steps=num_steps,
                              guidance=guidance, shift=shift, best_of=best_of, hue_tol=HUE_TOL, min_sat=MIN_SAT,
                              min_val=MIN_VAL, min_pixels=MIN_PIXELS, size_range=SIZE_RANGE))


def table_rows(r: dict, label: str = "model") -> list[list[str]]:
    """A summary of text_to_video -> its model's row (with best_of > 1: the kept clips', the first draws' and the
    oracle's), then the simulator's (reference) row, last."""
    def cell(key, j):
        return f"{r[key][j]:.3f} ± {r[key + '_se'][j]:.3f}" if key + "_se" in r else f"{r[key][j]:.3f}"

    def gap(key):
        return f"{r[key][0]:+.3f} ± {r[key][1]:.3f}"

    who = [(label, "model")]
    if "first" in r:
        n = r["settings"]["best_of"]
        who = [(f"{label}: kept by the critic", "model"), (f"{label}: first of the {n} draws (best_of 1)", "first"),
               (f"{label}: oracle of the {n} (reads this check; a ceiling)", "oracle")]
    return [[w, str(r["n"]), cell(key, 0), cell(key, 1), gap(f"{key}_gap"), cell(f"{key}_objects", 0),
             cell(f"{key}_objects", 1), gap(f"{key}_objects_gap")]
            for w, key in who + [("simulator (reference)", "simulator")]]


def critic_line(r: dict) -> str:
    """The critic's paired gain over the first draw, in words ('' for best_of 1)."""
    if "critic_gain" not in r:
        return ""
    (c, cs), (o, os_) = r["critic_gain"], r["critic_gain_objects"]
    return (f"Kept by the critic minus the first draw, paired per caption: named colours {c:+.3f} ± {cs:.3f}, "
            f"named objects {o:+.3f} ± {os_:.3f}.")


TABLE_HEADER = ["frames from", "clips", "named colours present", "unnamed colours present", "named − unnamed",
                "named objects present", "unnamed objects present", "named − unnamed"]
