"""Does text-to-video show what the prompt names? Colour segmentation of generated clips.

Legend: T frames, H, W pixels, K named colours.

For held-out episodes of the passive worlds, the prompt is the episode's
caption, which names every object by colour ("the magenta box, the cyan
box, ..."). A pixel shows palette colour c when it is saturated and bright
enough and its hue is nearest to c's (within HUE_TOL degrees); a colour is
present in a clip when at least MIN_PIXELS pixels show it in at least half of
the frames. Reported: the share of named colours present (recall) and the share
of palette colours the prompt does not name that appear anyway (false
positives), for the model and, as the reference, for the simulator's own
frames of the same episodes (what a perfect generator would score).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from kinema.worlds.scene import PALETTE

CHROMATIC = [c for c in PALETTE if c not in ("white", "black")]
HUES = np.array([colorsys.rgb_to_hsv(*PALETTE[c])[0] * 360 for c in CHROMATIC])  # degrees
HUE_TOL, MIN_SAT, MIN_VAL, MIN_PIXELS = 14.0, 0.35, 0.2, 6
SCENARIOS = ("free_fall", "stable_stack", "unstable_stack", "dominoes")


def colours_present(frames: np.ndarray) -> dict[str, bool]:
    """uint8 [T, H, W, 3] -> {palette colour: present}."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV_FULL) for f in frames]).astype(np.float64)
    hue, sat, val = hsv[..., 0] * 360 / 256, hsv[..., 1] / 255, hsv[..., 2] / 255
    d = np.abs(hue[..., None] - HUES)
    d = np.minimum(d, 360 - d)  # [T, H, W, K] circular hue distance
    best = d.argmin(-1)
    ok = (np.take_along_axis(d, best[..., None], -1)[..., 0] <= HUE_TOL) & (sat >= MIN_SAT) & (val >= MIN_VAL)
    out = {}
    for k, c in enumerate(CHROMATIC):
        per_frame = ((best == k) & ok).sum((1, 2))  # [T]
        out[c] = bool((per_frame >= MIN_PIXELS).mean() >= 0.5)
    return out


def _score(present: dict, named: set) -> tuple[float, float]:
    unnamed = [c for c in CHROMATIC if c not in named]
    recall = np.mean([present[c] for c in named]) if named else np.nan
    false_pos = np.mean([present[c] for c in unnamed]) if unnamed else np.nan
    return float(recall), float(false_pos)


def _se(rows: list, j: int) -> float:
    """Standard error over clips of the model's score j (0 named, 1 unnamed); clips vary far more than seeds do."""
    x = np.array([r["model"][j] for r in rows], dtype=float)
    x = x[~np.isnan(x)]
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def text_to_video(pipeline, out, *, n: int = 10, scenarios=SCENARIOS, camera: str = "front", num_steps: int = 20,
                  guidance: float = 3.0, seed: int = 0, progress: bool = True) -> dict:
    """Generate from each held-out caption; -> {"rows": [...], "model": (recall, fp), "model_se": standard errors,
    "simulator": (recall, fp)}."""
    from kinema.eval.data import EpisodeCache, heldout_seed
    from kinema.worlds.preview import contact_sheet, write_png

    out = Path(out)
    cache = EpisodeCache(out / "cache")
    rows, sheet = [], []
    jobs = [(s, i) for s in scenarios for i in range(n)]
    for scenario, i in tqdm(jobs, desc="text2video", disable=not progress):
        ep = cache.get(scenario, heldout_seed(i))
        named = {o["colour"] for o in ep.objects_info if o.get("colour") in CHROMATIC and o["colour"] in ep.caption}
        gen = pipeline.run("text2video", num_frames=33, prompt=ep.caption, num_steps=num_steps, guidance=guidance,
                           seed=seed + i)["frames"]
        m, s = _score(colours_present(gen), named), _score(colours_present(ep.frames[camera]), named)
        rows.append(dict(scenario=scenario, seed=heldout_seed(i), named=sorted(named), model=m, simulator=s))
        if i < 2:
            sheet += [(f"{scenario} sim", ep.frames[camera]), (f"{scenario} model", gen)]
    write_png(out / "text2video.png", contact_sheet(sheet, columns=6, scale=2))
    mean = lambda key, j: float(np.nanmean([r[key][j] for r in rows]))  # noqa: E731
    return dict(rows=rows, model=(mean("model", 0), mean("model", 1)), model_se=(_se(rows, 0), _se(rows, 1)),
                simulator=(mean("simulator", 0), mean("simulator", 1)), sheet=str(out / "text2video.png"),
                settings=dict(n=n, scenarios=list(scenarios), camera=camera, num_steps=num_steps, guidance=guidance,
                              hue_tol=HUE_TOL, min_sat=MIN_SAT, min_val=MIN_VAL, min_pixels=MIN_PIXELS))
