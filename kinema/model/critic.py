"""Best-of-N generation: draw N clips from one request and keep the one the checkpoint's own reasoner reads the
prompt in best.

Legend: N candidates, T frames, H, W pixels.

Draws of one prompt differ a great deal (BENCHMARKS "Text-to-video"), and the same checkpoint holds a reasoner
trained to caption the worlds' clips. Each draw is scored by log P(prompt | clip) as the reasoner's answer to the
caption question (ReasonerJudge.caption, watching the decoded frames silently, as `kinema reason` would): a critic
that uses nothing but the request. Every candidate is scored against the same text, so no length normalisation
is needed. This is vLLM's `best_of` with the scorer a second model (the Cosmos practice of a reasoner as critic).
Cost: N generations and N reasoner passes over the prompt.

Candidate k is drawn with seed + k·SEED_STRIDE, so candidate 0 is exactly the plain request's draw.
"""

from __future__ import annotations

from kinema.model.reasoner import DEFAULT_FPS, Reasoner, ReasonerJudge

CAPTION_MODES = ("text2image", "text2video", "image2video", "video2video")  # whose prompt is a caption (modes.py)
SEED_STRIDE = 100_003  # prime, past any evaluation's per-clip seed offsets
MAX_BEST_OF = 16


def check(n, mode: str, prompt: str) -> None:
    """A clear error for a best_of the critic cannot serve (before any compute)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_BEST_OF:
        raise ValueError(f"best_of: expected an integer in [1, {MAX_BEST_OF}], got {n!r}")
    if n > 1 and mode not in CAPTION_MODES:
        raise ValueError(f"best_of: expected 1 in {mode} (the critic reads captions: only {', '.join(CAPTION_MODES)} "
                         f"draw several), got {n}")
    if n > 1 and not prompt.strip():
        raise ValueError(f"best_of: expected 1 without a prompt (the critic scores the prompt), got {n}")


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
        scores.append(judge.caption(out["frames"], fps, prompt) if n > 1 else 0.0)
    return outs, scores, max(range(n), key=scores.__getitem__)
