"""The `kinema` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import kinema  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)

DEFAULT_DEMO_DIR = "outputs/demo"


def _worlds_list(args):
    from kinema.worlds.registry import WORLDS

    print(f"{'scenario':16s} {'family':9s} {'frames':>6s} {'fps':>5s}  description")
    for name, cls in WORLDS.items():
        print(f"{name:16s} {cls.family:9s} {cls.frames:6d} {cls.fps:5.0f}  {cls.description}")


def _worlds_generate(args):
    from kinema.worlds.generate import generate

    t = time.time()
    out = generate(args.scenario, args.episodes, args.seed, args.out, size=args.size, fps=args.fps,
                   frames=args.frames, workers=args.workers, twins=args.twins, policy=args.policy,
                   episodes_per_file=args.episodes_per_file)
    print(f"wrote {out} in {time.time() - t:.1f} s")


def _worlds_preview(args):
    from kinema.worlds.preview import preview

    png, mp4 = preview(args.dir, args.out, episodes=args.episodes)
    print(f"contact sheet: {png}\nvideo grid:    {mp4}")


def _worlds_validate(args):
    from kinema.data.lerobot import validate_dataset

    summary = validate_dataset(args.dir)
    print(f"{args.dir}: valid LeRobot v3.0 dataset")
    for k, v in summary.items():
        print(f"  {k}: {v}")


def _worlds_export(args):
    from kinema.data.shards import export_webdataset

    shards = export_webdataset(args.dir, args.out, maxcount=args.maxcount)
    print(f"wrote {len(shards)} shard(s) to {args.out}")


def _demo(args):
    """The main job on built-in defaults: the world model predicts a held-out episode from its actions."""
    from kinema.model.demo import demo

    demo(args.out, args.model, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kinema", description="kinema: world foundation models for physical AI")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("worlds", help="simulated worlds with exact ground truth").add_subparsers(dest="action", required=True)
    w.add_parser("list", help="list the scenarios").set_defaults(func=_worlds_list)
    g = w.add_parser("generate", help="simulate episodes into a LeRobot v3.0 dataset (resumable)")
    g.add_argument("--scenario", required=True, help="a name from `kinema worlds list`")
    g.add_argument("--episodes", type=int, required=True, help="number of episodes (twins come on top)")
    g.add_argument("--seed", type=int, default=0, help="seed of the episode seeds (held-out sets use other seeds)")
    g.add_argument("--out", required=True, help="output dataset directory")
    g.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    g.add_argument("--fps", type=float, default=None, help="frames per second (default: the world's)")
    g.add_argument("--frames", type=int, default=None, help="frames per episode (default: the world's)")
    g.add_argument("--workers", type=int, default=1, help="parallel simulation processes")
    g.add_argument("--twins", action="store_true", help="also write a physically implausible twin of each episode")
    g.add_argument("--policy", default="expert", help="who acts in tabletop worlds: expert, random, or noisy_expert:EPS "
                   "(the expert, each frame with probability EPS a full step in a random direction instead: episodes "
                   "that succeed and fail under one policy)")
    g.add_argument("--episodes-per-file", type=int, default=100, help="episodes packed into one mp4 / parquet file")
    g.set_defaults(func=_worlds_generate)
    v = w.add_parser("preview", help="contact sheet PNG and mp4 grid of a dataset")
    v.add_argument("dir", help="a dataset (kinema worlds generate)")
    v.add_argument("--out", default=None, help="where to write them (default: the dataset directory)")
    v.add_argument("--episodes", type=int, default=4, help="episodes shown")
    v.set_defaults(func=_worlds_preview)
    c = w.add_parser("validate", help="check every file, schema and count of a dataset")
    c.add_argument("dir", help="a dataset (kinema worlds generate)")
    c.set_defaults(func=_worlds_validate)
    e = w.add_parser("export-webdataset", help="write a dataset as webdataset tar shards")
    e.add_argument("dir", help="a dataset (kinema worlds generate)")
    e.add_argument("out", help="folder for the tar shards")
    e.add_argument("--maxcount", type=int, default=100, help="episodes per shard")
    e.set_defaults(func=_worlds_export)

    from kinema.tokenize.cli import add_parser as add_tokenizer

    add_tokenizer(sub)

    from kinema.eval.cli import add_parser as add_eval

    add_eval(sub)

    from kinema.model.cli import add_parsers as add_model

    add_model(sub)
    from kinema.model.ar_cli import add_parsers as add_ar

    add_ar(sub)

    d = sub.add_parser("demo", help="the main job on built-in defaults")
    d.add_argument("--out", default=DEFAULT_DEMO_DIR, help="where the video and contact sheet go (default: %(default)s)")
    d.add_argument("--model", default="checkpoints/world-model-small", help="a world-model checkpoint folder (default: %(default)s)")
    d.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when there is one")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"kinema: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
