"""Colour-contrastive guidance for text-to-video: a second guide away from the prompt with its colours changed
(an experiment; protocol in benchmarks/prereg/t2v-colour-guidance.md).

Legend: L tokens, V values per token.

    x0 = x0(prompt) + (g - 1)(x0(prompt) - x0(empty)) + (g_col - 1)(x0(prompt) - x0(recoloured))

The recoloured prompt is the first of scripts/critic_contrast.py's recolourings (every named colour changed at once,
a fixed function of the prompt). `--replace` drops the empty-prompt guide and guides by the recoloured one alone at
scale g (a negative prompt in the usual sense). One draw per held-out caption, checked as `kinema eval text2video`
checks it; prints named / unnamed objects and colours with paired s.e.

    python scripts/t2v_colour_guidance.py --first 40 --n 20 --g-col 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.model.critic import best_of
from kinema.model.evaluate import CHROMATIC, SCENARIOS, _checks, _mean_se, reference_sizes
from kinema.model.pipeline import Pipeline
from kinema.model.reasoner import DEFAULT_FPS, Reasoner, ReasonerJudge
from kinema.train.checkpoint import write_json
from scripts.critic_contrast import recolour_all

STEPS, GUIDANCE = 20, 3.0


class ColourGuided:
    """A pipeline stand-in whose text2video `run` adds the colour guide (what critic.best_of calls)."""

    def __init__(self, pipe: Pipeline, g_col: float, replace: bool):
        self.pipe, self.g_col, self.replace = pipe, g_col, replace

    def run(self, mode, *, prompt, seed, fps=DEFAULT_FPS, **_):
        pipe = self.pipe
        p = pipe._plan(mode, num_frames=33, prompt=prompt, guidance=GUIDANCE, num_steps=STEPS, fps=fps)
        other = recolour_all(prompt)
        guides = list(p.guides)
        if other:
            neg = pipe._plan(mode, num_frames=33, prompt=other[0], guidance=1.0, num_steps=STEPS, fps=fps).tok
            guides = [(neg, GUIDANCE)] if self.replace else guides + [(neg, self.g_col)]
        v = pipe._denoise(p.tok, guides, num_steps=p.num_steps, shift=p.shift, sampler=p.sampler, seed=seed,
                          progress=False)
        return pipe._unpack(mode, p.tok, v, p.vision, p.k, p.T, p.streams, p.fps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--cache", default="outputs/eval/cache")
    ap.add_argument("--out", default=None)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--g-col", type=float, default=2.0)
    ap.add_argument("--replace", action="store_true")
    ap.add_argument("--best-of", type=int, default=1)
    a = ap.parse_args()
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    gen = ColourGuided(pipe, a.g_col, a.replace)
    judge = ReasonerJudge(Reasoner(pipe))  # the colour critic, when --best-of > 1
    cache = EpisodeCache(a.cache)
    rows, t0 = [], time.time()
    for scenario, i in tqdm([(s, i) for s in SCENARIOS for i in range(a.first, a.first + a.n)], desc="captions"):
        ep = cache.get(scenario, heldout_seed(i))
        named = {o["colour"] for o in ep.objects_info if o.get("colour") in CHROMATIC and o["colour"] in ep.caption}
        sizes = reference_sizes(ep.frames["front"], named)
        outs, _, kept = best_of(gen, "text2video", a.best_of, prompt=ep.caption, seed=i, judge=judge)
        rows.append(dict(scenario=scenario, episode=i, **_checks(outs[kept]["frames"], sizes, named)))
    seconds = time.time() - t0
    obj = np.array([r["model_objects"] for r in rows], float)
    col = np.array([r["model"] for r in rows], float)
    res = dict(settings=vars(a), seconds=round(seconds, 1), n=len(rows),
               named_objects=_mean_se(obj[:, 0]), unnamed_objects=_mean_se(obj[:, 1]),
               object_gap=_mean_se(obj[:, 0] - obj[:, 1]), named_colours=_mean_se(col[:, 0]),
               unnamed_colours=_mean_se(col[:, 1]), colour_gap=_mean_se(col[:, 0] - col[:, 1]))
    print(json.dumps({k: v for k, v in res.items() if k != "settings"}))
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(a.out) / "rows.json", dict(res, rows=rows))


if __name__ == "__main__":
    main()
