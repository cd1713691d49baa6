"""Does a contrastive critic pick better text-to-video draws than log P(prompt | clip)? (an experiment)

Legend: N draws per caption, M alternative captions.

For each held-out caption of the passive worlds, draw N clips (as `kinema eval text2video --best-of N`: seed
+ i + k·SEED_STRIDE), check each with the evaluation's colour segmentation, and score each under five critics:

  raw  log P(prompt | clip), the critic of `--best_of` before this experiment;
  all  raw − logsumexp over the prompt and 16 recolourings of it (every named colour changed at once);
  one  Σ over named colours c of raw − logsumexp over the prompt and it with c alone changed to each colour the
       prompt does not name;
  num  the same for each count word before an object noun ("Two objects"), changed to each other count 1..8;
  both one + num.

"one" is the critic `--best_of` uses since this experiment (kinema.model.critic.score). The rows (every draw's
checks and scores) are written to OUT/rows.json and a table of named objects recall per critic and number of draws
is printed; the rule was written before the runs (BENCHMARKS "A critic that asks about colours").

    python scripts/critic_contrast.py --out outputs/critic-contrast/dev --first 40 --n 20 --draws 8

With `--full RUN/rows.json` it instead draws each caption's candidates as `--preview-steps` previews, lets the
shipped critic choose among them, and reports the chosen seeds' full draws from that run (same seeds, same settings).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.model.critic import COLOUR, SEED_STRIDE, contrast, score
from kinema.model.evaluate import SCENARIOS, _checks, reference_sizes
from kinema.model.pipeline import Pipeline
from kinema.model.reasoner import DEFAULT_FPS, Reasoner, ReasonerJudge
from kinema.train.checkpoint import write_json
from kinema.worlds.scene import CHROMATIC

RECOLOURINGS = 16
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
NOUNS = r"(?:objects?|box(?:es)?|domino(?:es)?|balls?|cylinders?)\b"
COUNT = re.compile(rf"\b({'|'.join(NUMBERS)})\b(?= {NOUNS})", re.IGNORECASE)


def recolour_all(prompt: str) -> list[str]:
    """RECOLOURINGS copies of the prompt with every named colour changed at once (injectively, not the identity)."""
    named = sorted({c.lower() for c in COLOUR.findall(prompt)})  # the worlds' captions: lower case
    rng = np.random.default_rng(zlib.crc32(prompt.encode()))
    every, seen = [], set()
    for _ in range(200):
        if len(every) == RECOLOURINGS:
            break
        to = [str(c) for c in rng.permutation(CHROMATIC)[: len(named)]]
        if to != named and tuple(to) not in seen:
            seen.add(tuple(to))
            swap = dict(zip(named, to))
            every.append(COLOUR.sub(lambda m, swap=swap: swap.get(m.group(1), m.group(1)), prompt))
    return every


def recount(prompt: str) -> list[list[str]]:
    """For each count word before an object noun, the prompt with it changed to each other count (case kept)."""
    words = sorted({m.group(1).lower() for m in COUNT.finditer(prompt)})
    out = []
    for w in words:
        pat = re.compile(rf"\b{w}\b(?= {NOUNS})", re.IGNORECASE)
        out.append([pat.sub(lambda m, n=n: n.capitalize() if m.group(0)[0].isupper() else n, prompt)
                    for n in NUMBERS if n != w])
    return out


def scores(judge: ReasonerJudge, frames: np.ndarray, prompt: str) -> dict:
    every = recolour_all(prompt)
    lp = np.array(judge.caption(frames, DEFAULT_FPS, [prompt, *every]))
    all_ = lp[0] - (lp.max() + np.log(np.exp(lp - lp.max()).sum()))
    counts = recount(prompt)
    num = contrast(np.array(judge.caption(frames, DEFAULT_FPS, [prompt, *(t for g in counts for t in g)])), counts)
    one = score(judge, frames, DEFAULT_FPS, prompt)
    return dict(raw=float(lp[0]), all=float(all_), one=one, num=num, both=one + num)


def run(a) -> list[dict]:
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    judge = ReasonerJudge(Reasoner(pipe))
    cache = EpisodeCache(a.cache)
    rows = []
    for scenario, i in tqdm([(s, i) for s in SCENARIOS for i in range(a.first, a.first + a.n)], desc="captions"):
        ep = cache.get(scenario, heldout_seed(i))
        named = {o["colour"] for o in ep.objects_info if o.get("colour") in CHROMATIC and o["colour"] in ep.caption}
        sizes = reference_sizes(ep.frames["front"], named)
        draws = []
        for k in range(a.draws):
            out = pipe.run("text2video", prompt=ep.caption, seed=i + k * SEED_STRIDE, num_frames=33, num_steps=20,
                           guidance=3.0, fps=DEFAULT_FPS)
            draws.append(dict(**_checks(out["frames"], sizes, named), **scores(judge, out["frames"], ep.caption)))
        rows.append(dict(scenario=scenario, episode=i, named=sorted(named), draws=draws))
    return rows


def previews(a) -> None:
    """Score `--draws` previews of `--preview-steps` steps per caption with the shipped critic; choose among the
    first n for n = 4, 8 and report the chosen seed's full draw from an earlier run's rows (`--full`, same seeds)."""
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    judge = ReasonerJudge(Reasoner(pipe))
    full = json.loads(Path(a.full).read_text())
    out, t0 = [], time.time()
    for row in tqdm(full, desc="previews"):
        ep = EpisodeCache(a.cache).get(row["scenario"], heldout_seed(row["episode"]))
        sc = []
        for k in range(a.draws):
            f = pipe.run("text2video", prompt=ep.caption, seed=row["episode"] + k * SEED_STRIDE, num_frames=33,
                         num_steps=a.preview_steps, guidance=3.0, fps=DEFAULT_FPS)["frames"]
            sc.append(score(judge, f, DEFAULT_FPS, ep.caption))
        out.append(sc)
    seconds = time.time() - t0
    print(f"{len(full)} captions x {a.draws} previews at {a.preview_steps} steps: {seconds:.0f} s")
    for n in (4, 8):
        if n > a.draws:
            continue
        pick = [full[i]["draws"][int(np.argmax(sc[:n]))]["model_objects"] for i, sc in enumerate(out)]
        ref = [r["draws"][_keep(r, "one", n)]["model_objects"] for r in full]
        d = np.array([p[0] - q[0] for p, q in zip(pick, ref)], float)
        d = d[np.isfinite(d)]
        same = np.mean([int(np.argmax(sc[:n])) == _keep(r, "one", n) for sc, r in zip(out, full)])
        print(f"n={n}: previews choose {np.nanmean([p[0] for p in pick]):.3f} named / "
              f"{np.nanmean([p[1] for p in pick]):.3f} unnamed objects; full draws "
              f"{np.nanmean([q[0] for q in ref]):.3f}; difference {d.mean():+.3f} ± "
              f"{d.std(ddof=1) / np.sqrt(len(d)):.3f}; same choice {same:.2f}")
    write_json(Path(a.out) / "previews.json", out)


def table(rows: list[dict], draws: int) -> list[str]:
    """Named objects recall (and the object gap) of the clip each critic keeps among the first n draws."""
    lines = ["| critic | " + " | ".join(f"best of {n}" for n in _ns(draws)) + " |",
             "|---|" + "---|" * len(_ns(draws))]
    base = {n: [r["draws"][_keep(r, "raw", n)]["model_objects"] for r in rows] for n in _ns(draws)}
    for critic in [c for c in ("raw", "all", "one", "num", "both") if c in rows[0]["draws"][0]] + ["oracle"]:
        cells = []
        for n in _ns(draws):
            kept = [r["draws"][_keep(r, critic, n)]["model_objects"] for r in rows]
            rec = np.array([k[0] for k in kept], float)
            gap = np.array([k[0] - k[1] for k in kept], float)
            d = rec - np.array([b[0] for b in base[n]], float)
            cells.append(f"{np.nanmean(rec):.3f} (gap {np.nanmean(gap):+.3f}; vs raw {np.nanmean(d):+.3f} ± "
                         f"{np.nanstd(d, ddof=1) / np.sqrt(np.isfinite(d).sum()):.3f})")
        lines.append(f"| {critic} | " + " | ".join(cells) + " |")
    return lines


def _ns(draws: int) -> list[int]:
    return [n for n in (1, 2, 4, 8, 16) if n <= draws]


def _keep(row: dict, critic: str, n: int) -> int:
    d = row["draws"][:n]
    if critic == "oracle":
        return max(range(n), key=lambda k: np.nan_to_num(d[k]["model_objects"][0], nan=-1.0))
    return max(range(n), key=lambda k: d[k][critic])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="checkpoints/world-model-small")
    p.add_argument("--cache", default="outputs/eval/cache")
    p.add_argument("--out", required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--full", default=None, help="rows.json of a full run: score previews against its draws")
    p.add_argument("--preview-steps", type=int, default=4)
    a = p.parse_args()
    if a.full:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        return previews(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run(a)
    write_json(out / "rows.json", rows)
    text = "\n".join(table(rows, a.draws))
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
