"""Best-of-N generation: draw N clips from one request and keep the one the checkpoint's own reasoner finds the
prompt's colours in best.

Legend: N candidates, T frames, H, W pixels, C colours the prompt names.

Draws of one prompt differ a great deal (BENCHMARKS "Text-to-video"), and the same checkpoint holds a reasoner
trained to caption the worlds' clips. Each draw is watched by that reasoner (the decoded frames, silent, as
`kinema reason` would) and scored by how much more it believes the prompt, as its answer to the caption
question (ReasonerJudge.caption), than the prompt with one named colour changed:

    score = sum over named colours c of  log P(prompt | clip) - logsumexp over {prompt} and {prompt with c -> d}

d running over the chromatic colours the prompt does not name (kinema.worlds.scene.CHROMATIC). The raw log P(prompt
| clip) is mostly the caption's other words (a collision time, an outcome), which vary from draw to draw whatever
the objects look like; each term here cancels them and asks one thing: is colour c, rather than another, in the clip
(BENCHMARKS "A critic that asks about colours": over 400 held-out captions, best of 4, it keeps clips with more of
the named objects than the raw log-probability does, +0.044 ± 0.011). A prompt that names no palette colour (or all
eight) is scored by the raw log-probability. Only the request and the worlds' palette are used. This is vLLM's
`best_of` with the scorer a second model (the Cosmos practice of a reasoner as critic). Cost: N generations and N
reasoner passes, each scoring the prompt and its C × (8 - C) recolourings side by side against one cached clip.

Candidate k is drawn with seed + k·SEED_STRIDE, so candidate 0 is exactly the plain request's draw.
"""

from __future__ import annotations

import re

import numpy as np

from kinema.model.reasoner import DEFAULT_FPS, Reasoner, ReasonerJudge
from kinema.worlds.scene import CHROMATIC

CAPTION_MODES = ("text2image", "text2video", "image2video", "video2video")  # whose prompt is a caption (modes.py)
SEED_STRIDE = 100_003  # prime, past any evaluation's per-clip seed offsets
MAX_BEST_OF = 16
COLOUR = re.compile(r"\b(" + "|".join(CHROMATIC) + r")\b", re.IGNORECASE)  # whole words: "Red", not "reddish"


def check(n, mode: str, prompt: str) -> None:
    """A clear error for a best_of the critic cannot serve (before any compute)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_BEST_OF:
        raise ValueError(f"best_of: expected an integer in [1, {MAX_BEST_OF}], got {n!r}")
    if n > 1 and mode not in CAPTION_MODES:
        raise ValueError(f"best_of: expected 1 in {mode} (the critic reads captions: only {', '.join(CAPTION_MODES)} "
                         f"draw several), got {n}")
    if n > 1 and not prompt.strip():
        raise ValueError(f"best_of: expected 1 without a prompt (the critic scores the prompt), got {n}")


def recolourings(prompt: str) -> list[list[str]]:
    """For each chromatic colour the prompt names (in palette order, any case), the prompt with every mention of
    that colour changed to each chromatic colour it does not name, capitalised where it was ([C][8 - C] strings;
    none when it names all eight)."""
    named = {c.lower() for c in COLOUR.findall(prompt)}
    others = [d for d in CHROMATIC if d not in named]
    if not others:
        return []

    def swap(c: str, d: str) -> str:
        return re.sub(rf"\b{c}\b", lambda m: d.capitalize() if m.group(0)[0].isupper() else d, prompt,
                      flags=re.IGNORECASE)

    return [[swap(c, d) for d in others] for c in CHROMATIC if c in named]


def contrast(logp, groups: list[list[str]]) -> float:
    """logp: log-probabilities of the prompt, then of each group's texts in order [1 + sum of group sizes] ->
    the sum over groups of logp[0] - logsumexp(logp[0] and the group's): the prompt's log-posterior against each
    group of alternatives."""
    total, at = 0.0, 1
    for group in groups:
        alt = np.array([logp[0], *logp[at : at + len(group)]], dtype=float)
        total += logp[0] - (alt.max() + np.log(np.exp(alt - alt.max()).sum()))
        at += len(group)
    return float(total)


def score(judge, frames: np.ndarray, fps: float, prompt: str) -> float:
    """The critic's score of one clip for `prompt` (the module's formula); uint8 [T, H, W, 3]."""
    swaps = recolourings(prompt)
    logp = judge.caption(frames, fps, [prompt, *(s for group in swaps for s in group)])
    return contrast(logp, swaps) if swaps else float(logp[0])


def best_of(pipeline, mode: str, n: int, *, prompt: str, seed: int = 0, fps: float = DEFAULT_FPS,
            judge=None, **request) -> tuple[list[dict], list[float], int]:
    """Run `pipeline.run(mode, ...)` n times -> (every candidate's output, their critic scores [N], the index
    kept: the highest score). judge: a ReasonerJudge (default: the pipeline's own reasoner)."""
    check(n, mode, prompt)
    judge = judge or ReasonerJudge(Reasoner(pipeline))
    outs, scores = [], []
    for k in range(n):
        out = pipeline.run(mode, prompt=prompt, seed=seed + k * SEED_STRIDE, fps=fps, **request)
        outs.append(out)
        # one candidate needs no critic: best_of 1 costs exactly a plain run
        scores.append(score(judge, out["frames"], fps, prompt) if n > 1 else 0.0)
    return outs, scores, max(range(n), key=scores.__getitem__)
