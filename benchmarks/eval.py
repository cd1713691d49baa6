"""The evaluation benchmarks on every baseline: the tables of BENCHMARKS.md ("Evaluation") and their run times.

Runs `kinema eval` physics, physics-iq, actions, closed-loop and plausibility
for the built-in baselines and oracles at full size (64x64), times each run,
then writes the combined report. Results are resumable: a rerun with the same
--out reuses finished rollouts (and the timing then measures only what was
left; use a fresh --out to time from scratch).

Usage: python benchmarks/eval.py [--out outputs/eval-bench] [--only physics,actions] [--names copy_last,tokenizer]
                                 [--n-physics 20] [--n-iq 20] [--n-actions 20] [--n-closed-loop 10]
                                 [--n-plausibility 25]
The default N keep each benchmark run of one baseline within about 10 minutes on the
project's 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402

from kinema.eval import actions, closed_loop, physics_alignment, physics_iq, plausibility  # noqa: E402
from kinema.eval.judge import get_judge  # noqa: E402
from kinema.eval.predictor import get_predictor  # noqa: E402
from kinema.eval.report import write_report  # noqa: E402

FRAME_BASELINES = ("copy_last", "zero_motion", "linear", "second_take")
PLAN = {
    "physics": (physics_alignment, FRAME_BASELINES + ("tokenizer",)),
    "physics-iq": (physics_iq, FRAME_BASELINES),
    "actions": (actions, ("copy_last", "zero_motion", "linear", "simulator", "second_take", "mean_action",
                          "state_diff", "tokenizer")),
    "closed-loop": (closed_loop, ("simulator", "copy_last")),
    "plausibility": (plausibility, ("state_checker",)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="outputs/eval-bench")
    ap.add_argument("--only", default=",".join(PLAN))
    ap.add_argument("--names", default=None, help="only these baselines (comma-separated)")
    for name, default in (("physics", 20), ("iq", 20), ("actions", 20), ("closed-loop", 10), ("plausibility", 25)):
        ap.add_argument(f"--n-{name}", type=int, default=default)
    args = ap.parse_args()
    n = {"physics": args.n_physics, "physics-iq": args.n_iq, "actions": args.n_actions,
         "closed-loop": args.n_closed_loop, "plausibility": args.n_plausibility}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"MUJOCO_GL={os.environ['MUJOCO_GL']}; date {time.strftime('%Y-%m-%d')}; size 64x64\n")
    timings = []
    for bench in args.only.split(","):
        module, names = PLAN[bench]
        for name in names:
            if args.names and name not in args.names.split(","):
                continue
            t0 = time.time()
            if bench == "plausibility":
                summary = module.run(get_judge(f"baseline:{name}"), args.out, n=n[bench], progress=False)
            else:
                summary = module.run(get_predictor(f"baseline:{name}"), args.out, n=n[bench], progress=False)
            dt = time.time() - t0
            timings.append((bench, name, n[bench], dt))
            print(module.table(summary))
            print(f"[{bench} {name}: N={n[bench]}, {dt:.0f} s]\n", flush=True)
    print("| benchmark | baseline | N | wall time |\n|---|---|---|---|")
    for bench, name, k, dt in timings:
        print(f"| {bench} | {name} | {k} | {dt / 60:.1f} min |")
    print(f"\nreport: {write_report(args.out)}")


if __name__ == "__main__":
    main()
