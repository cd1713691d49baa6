"""`kinema eval ...`: the five benchmarks and the report, as subcommands of the kinema command.

Every benchmark takes the thing to evaluate as `--model PATH` (a checkpoint
folder) or `--baseline NAME`, writes into `--out` (default outputs/eval)
resumably, and prints its Markdown table. `--quick` is the tiny preset the
test suite runs: one rollout, 32x32 frames, fewer policies.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_OUT = "outputs/eval"
QUICK = dict(n=1, size=32)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise ValueError(f"expected comma-separated whole numbers, got {text!r}") from None


def _predictor(args):
    from kinema.eval.predictor import get_predictor

    if args.model:  # a model loader gets the device (and sampling options); the baselines have no use for them
        options = {k: getattr(args, k) for k in ("action_guidance", "strength", "carry", "carry_gate", "temperature",
                                                   "top_p", "top_k")
                   if getattr(args, k, None) is not None}
        if getattr(args, "medusa", False):
            options["medusa"] = True
        try:
            return get_predictor(args.model, device=args.device, **options)
        except TypeError as e:  # an option this kind of model does not take
            if "unexpected keyword argument" not in str(e):
                raise
            raise ValueError(f"--model {args.model}: {e.args[0].split('got ')[-1]} does not apply to this kind of "
                             "world model") from None
    return get_predictor(f"baseline:{args.baseline}")


def _sizes(args) -> dict:
    d = dict(n=args.n, size=args.size)
    if args.quick:
        d.update(QUICK)
    return d


def _finish(name: str, folder, table: str, t0: float):
    print(table)
    print(f"{name}: {time.time() - t0:.1f} s; results, summary.json, table.md and plots in {folder}")


def _physics(args):
    """`physics` and `physics-iq`: the same rollouts and arguments, scored by the module args.benchmark."""
    import importlib

    from kinema.eval.harness import run_dir

    bench = importlib.import_module(f"kinema.eval.{args.benchmark}")
    p, t0 = _predictor(args), time.time()
    kw = dict(scenarios=_csv(args.scenarios) if args.scenarios else bench.SCENARIOS,
              cameras=_csv(args.cameras) if args.cameras else bench.CAMERAS,
              conditions=_ints(args.conditions))
    s = bench.run(p, args.out, progress=not args.no_progress, **_sizes(args), **kw)
    _finish(bench.BENCHMARK, run_dir(args.out, bench.BENCHMARK, p.name), bench.table(s), t0)


def _actions(args):
    from kinema.eval import actions as bench
    from kinema.eval.baselines import MEAN_ACTION_EPISODES
    from kinema.eval.harness import run_dir
    from kinema.eval.predictor import get_predictor

    episodes = 2 if args.quick else args.mean_episodes or MEAN_ACTION_EPISODES
    p = get_predictor("baseline:mean_action", episodes=episodes) if args.baseline == "mean_action" else _predictor(args)
    t0 = time.time()
    kw = dict(scenarios=_csv(args.scenarios) if args.scenarios else bench.SCENARIOS, context=args.context,
              clip=args.clip, tokenizer=args.tokenizer, mean_episodes=episodes, samples=args.samples)
    s = bench.run(p, args.out, progress=not args.no_progress, **_sizes(args), **kw)
    _finish("actions", run_dir(args.out, bench.BENCHMARK, bench.result_name(p, args.samples)), bench.table(s), t0)


def _closed_loop(args):
    from kinema.eval import closed_loop as bench
    from kinema.eval.harness import run_dir

    p, t0 = _predictor(args), time.time()
    tasks = _csv(args.tasks) if args.tasks else list(bench.TASKS)
    policies = _csv(args.policies) if args.policies else list(bench.POLICIES)
    if args.quick:
        tasks, policies = (tasks if args.tasks else ["push"]), (policies if args.policies else ["expert", "random"])
    judge = None
    if args.success_judge:  # loaded before any episode runs, so a bad path fails at once
        from kinema.eval.judge import get_judge

        judge = get_judge(args.success_judge, device=args.device)
    s = bench.run(p, args.out, tasks=tasks, policies=policies, context=args.context, chunk=args.chunk, judge=judge,
                  progress=not args.no_progress, **_sizes(args))
    _finish("closed-loop", run_dir(args.out, bench.BENCHMARK, p.name), bench.table(s), t0)


def _plausibility(args):
    from kinema.eval import plausibility as bench
    from kinema.eval.harness import run_dir
    from kinema.eval.judge import get_judge

    judge = get_judge(args.model, device=args.device) if args.model else get_judge(f"baseline:{args.baseline}")
    t0 = time.time()
    scenarios = _csv(args.scenarios) if args.scenarios else bench.SCENARIOS
    s = bench.run(judge, args.out, scenarios=scenarios, progress=not args.no_progress, **_sizes(args))
    _finish("plausibility", run_dir(args.out, bench.BENCHMARK, judge.name), bench.table(s), t0)


def _text2video(args):
    """Text-to-video: do the colours and objects the prompt names appear? (a generator checkpoint only)"""
    from kinema.eval.harness import run_dir
    from kinema.eval.results import markdown_table, write_json
    from kinema.model import evaluate as bench
    from kinema.model.pipeline import Pipeline

    t0 = time.time()
    name = "_".join(["world_model", *([f"g{args.guidance:g}"] if args.guidance != 3.0 else []),
                     *([f"steps{args.steps}"] if args.steps != 20 else []),
                     *([f"shift{args.shift:g}"] if args.shift is not None else []),
                     *([f"best{args.best_of}"] if args.best_of != 1 else []),
                     *([f"from{args.first}"] if args.first else [])])
    folder = run_dir(args.out, bench.BENCHMARK, name)
    r = bench.text_to_video(Pipeline.from_pretrained(args.model, device=args.device), folder, n=args.n,
                            num_steps=args.steps, guidance=args.guidance, shift=args.shift,
                            progress=not args.no_progress, name=name, best_of=args.best_of, first=args.first,
                            cache=Path(args.out) / "cache")
    write_json(folder / "summary.json", r)
    table = "\n\n".join(filter(None, [markdown_table(bench.TABLE_HEADER, bench.table_rows(r)), bench.critic_line(r)]))
    (folder / "table.md").write_text(table + "\n")
    _finish("text2video", folder, table, t0)


def _report(args):
    from kinema.eval.report import write_report

    path = write_report(args.out)
    print(path.read_text())
    print(f"report: {path}")


def _common(p, *, what: str, default_baseline: str | None = None):
    src = p.add_mutually_exclusive_group(required=default_baseline is None)
    src.add_argument("--model", default=None, help=f"a {what} checkpoint folder (config.json + model.safetensors)")
    src.add_argument("--baseline", default=default_baseline, help="a built-in baseline by name")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (shared by all benchmarks; resumable)")
    p.add_argument("--n", type=int, default=10, help="held-out rollouts (episodes, seeds) per scenario")
    p.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    p.add_argument("--quick", action="store_true",
                   help="tiny preset: 1 rollout at 32x32, overriding --n and --size (what the tests run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda: where a --model checkpoint runs")


def _sampling(p) -> None:
    """The autoregressive world model's decoding (kinema ar generate takes the same)."""
    p.add_argument("--temperature", type=float, default=None,
                   help="an autoregressive world model's sampling temperature (default: its own, 1.0; 0 greedy)")
    p.add_argument("--top-p", type=float, default=None, help="its nucleus mass (default: its own, 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="keep its k likeliest codes (default: all)")
    p.add_argument("--medusa", action="store_true", help="greedy with Medusa speculative decoding (same codes, faster)")


def _strength(p) -> None:
    p.add_argument("--strength", type=float, default=None,
                   help="a world model's start from the last given frame held still: the fraction of the denoising "
                        "steps run (1 = from pure noise, the default); results go to world_model_sS")
    p.add_argument("--carry", action=argparse.BooleanOptionalAction, default=None,
                   help="a world model's last given frame's detail carried into the generated frames "
                        "(kinema.model.carry; default the pipeline's); results go to world_model_carry / _nocarry")
    p.add_argument("--carry-gate", type=float, default=None,
                   help="carry's gate: pixel levels (0-255) of change in a generated frame that stop the detail being "
                        "added there (inf: no gate; default kinema.model.carry's); results go to world_model_gG")


def add_parser(subparsers) -> None:
    """Register `kinema eval` and its subcommands on the kinema command's subparsers."""
    from kinema.eval.predictor import PREDICTORS

    e = subparsers.add_parser("eval", help="physics alignment, Physics-IQ, actions, closed loop, plausibility, "
                                           "text-to-video, the reasoner, report")
    e = e.add_subparsers(dest="action", required=True)
    frame_baselines = "copy_last, zero_motion, linear, second_take, simulator, tokenizer"

    p = e.add_parser("physics", help="Cosmos 1 physics alignment: PSNR, SSIM, object IoU on 8 scenarios x 4 views")
    _common(p, what="world-model")
    p.add_argument("--conditions", default="1,9", help="context frames to condition on (comma-separated)")
    p.add_argument("--scenarios", default=None, help="comma-separated subset of the 8 scenarios")
    p.add_argument("--cameras", default=None, help="comma-separated subset of front,side,oblique,top")
    _strength(p)
    _sampling(p)
    p.epilog = f"baselines: {frame_baselines}"
    p.set_defaults(func=_physics, benchmark="physics_alignment")

    q = e.add_parser("physics-iq", help="Physics-IQ-style score on the same rollouts, normalised by a second take")
    _common(q, what="world-model")
    q.add_argument("--conditions", default="1,9", help="context frames to condition on (comma-separated)")
    q.add_argument("--scenarios", default=None, help="comma-separated subset of the 8 scenarios")
    q.add_argument("--cameras", default=None, help="comma-separated subset of front,side,oblique,top")
    _strength(q)
    _sampling(q)
    q.epilog = f"baselines: {frame_baselines}"
    q.set_defaults(func=_physics, benchmark="physics_iq")

    a = e.add_parser("actions", help="forward dynamics with true vs shuffled actions; inverse dynamics vs mean action")
    _common(a, what="world-model")
    a.add_argument("--scenarios", default=None, help="comma-separated subset of push,pick_place,stack,camera_motion")
    a.add_argument("--context", type=int, default=9, help="context frames")
    a.add_argument("--clip", type=int, default=33, help="clip frames (context + predicted)")
    a.add_argument("--tokenizer", default=None, help="video tokenizer checkpoint for latent L2 (skipped without)")
    a.add_argument("--action-guidance", type=float, default=None,
                   help="a world model's action guidance scale (1 = off, the default); results go to world_model_agG")
    _strength(a)
    _sampling(a)
    a.add_argument("--samples", type=int, default=1,
                   help="forward-dynamics samples per clip, scored by their mean (seeds seed..seed+K-1, the same for "
                        "true and shuffled actions); results go to NAME_samplesK")
    a.add_argument("--mean-episodes", type=int, default=None,
                   help="training episodes the mean-action baseline averages (default 256; 2 with --quick)")
    a.epilog = f"baselines: {', '.join(PREDICTORS)}"
    a.set_defaults(func=_actions)

    c = e.add_parser("closed-loop", help="policy success in the simulator and inside a world model")
    _common(c, what="world-model", default_baseline="simulator")
    c.add_argument("--tasks", default=None, help="comma-separated subset of push,pick_place,stack")
    c.add_argument("--policies", default=None,
                   help="comma-separated: expert, noisy_expert:EPS, random, or a policy checkpoint folder")
    c.add_argument("--context", type=int, default=1, help="real frames the imagination starts from")
    c.add_argument("--chunk", type=int, default=32, help="frames imagined per world-model call")
    c.add_argument("--success-judge", default=None, metavar="PATH",
                   help="a learned success judge (a reward model: the reasoner's checkpoint folder) scored on every "
                        "real and imagined episode, against the simulator's test")
    c.epilog = "the world model (--model/--baseline) is what the policies are imagined in; default baseline:simulator"
    c.set_defaults(func=_closed_loop)

    j = e.add_parser("plausibility", help="ROC AUC of a judge on the implausible twins")
    _common(j, what="judge", default_baseline="state_checker")
    j.add_argument("--scenarios", default=None, help="comma-separated subset of the worlds")
    j.set_defaults(func=_plausibility)

    t = e.add_parser("text2video", help="text-to-video: do the colours and objects named in the prompt appear?")
    t.add_argument("--model", required=True, help="a world-model checkpoint folder")
    t.add_argument("--out", default=DEFAULT_OUT, help="output folder (shared by all benchmarks); results go to "
                   "text2video/world_model[_gG][_stepsS][_shiftF][_bestN][_fromF] (not resumable: 40 clips take under a "
                   "minute)")
    t.add_argument("--n", type=int, default=10, help="held-out episodes per scenario (10: 40 clips, about 30 s)")
    t.add_argument("--steps", type=int, default=20, help="sampling steps")
    t.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    t.add_argument("--shift", type=float, default=None,
                   help="the sampler's rectified-flow time shift (default: the model's for the frame size)")
    t.add_argument("--first", type=int, default=0,
                   help="start at this held-out episode of each world (a set disjoint from --n's for choosing settings)")
    t.add_argument("--best-of", type=int, default=1,
                   help="draw this many clips a caption and keep the one the checkpoint's reasoner reads the caption "
                   "in best (kinema.model.critic); also reports the first draw alone and the oracle of the draws")
    t.add_argument("--device", default="auto", help="auto|cpu|cuda: where the checkpoint runs")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_text2video)

    try:
        from kinema.model.reason_cli import add_eval_parser
    except ImportError:
        pass
    else:
        add_eval_parser(e)

    r = e.add_parser("report", help="gather every result under --out into one Markdown page")
    r.add_argument("--out", default=DEFAULT_OUT, help="the results folder to gather; the page is written there")
    r.set_defaults(func=_report)
