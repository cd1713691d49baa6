"""What best-of-N costs: seconds for one text-to-video draw and for the critic's look at it.

    python benchmarks/critic.py [--model checkpoints/world-model-small] [--runs 5]

Workload: the caption of held-out episode 0 of each passive world (kinema.model.evaluate.SCENARIOS), a 33-frame
64x64 clip at the evaluation's settings (20 steps, guidance 3, the pipeline's dtype). Timed, median of `--runs`
after a warm-up: one draw (`Pipeline.run`), the critic of `--best_of` on that draw (kinema.model.critic.score:
the prompt and its recolourings side by side against one look at the clip), and the raw log P(prompt | clip)
alone (the critic before it, for comparison). Best of N costs N × (draw + critic); the ratio printed is best of 4
over one draw.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import date
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.eval.data import heldout_seed  # noqa: E402
from kinema.eval.simulator import simulate  # noqa: E402
from kinema.model.critic import recolourings, score  # noqa: E402
from kinema.model.evaluate import SCENARIOS  # noqa: E402
from kinema.model.pipeline import Pipeline  # noqa: E402
from kinema.model.reasoner import DEFAULT_FPS, Reasoner, ReasonerJudge  # noqa: E402
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def warm_median(fn, runs: int) -> float:
    fn()  # the first call pays for lazy set-up
    return median_time(fn, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="checkpoints/world-model-small")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    judge = ReasonerJudge(Reasoner(pipe))
    print(f"# best-of-N cost — {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {date.today()}, median of {a.runs} runs after a warm-up\n")
    print("| world | texts scored | draw s | critic s | raw log P s | best of 4 ÷ one draw |")
    print("|---|---|---|---|---|---|")
    for scenario in SCENARIOS:
        caption = simulate(scenario, heldout_seed(0), render=False).caption
        run = dict(prompt=caption, num_frames=33, num_steps=20, guidance=3.0, fps=DEFAULT_FPS)
        frames = pipe.run("text2video", **run)["frames"]
        draw = warm_median(lambda: pipe.run("text2video", **run), a.runs)
        crit = warm_median(lambda: score(judge, frames, DEFAULT_FPS, caption), a.runs)
        raw = warm_median(lambda: judge.caption(frames, DEFAULT_FPS, [caption]), a.runs)
        texts = 1 + sum(len(g) for g in recolourings(caption))
        print(f"| {scenario} | {texts} | {draw:.3f} | {crit:.3f} | {raw:.3f} | {4 * (draw + crit) / draw:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
