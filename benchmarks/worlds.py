"""Throughput of the worlds and the reader, and the video round-trip error.

Prints the figures recorded in BENCHMARKS.md:
- per scenario: time steps per second (all cameras) and camera frames per second
  to simulate + render + write a dataset at 64x64 on ONE process, plus the
  simulation-only rate measured in the same process (the baseline of the ratio);
- clips per second through ClipDataset (random access, 16-frame clips);
- round-trip error of the video codec presets on rendered frames.

Usage: python benchmarks/worlds.py [--episodes 8] [--repeats 3] [--scenarios a,b]
Each figure is the median of --repeats runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kinema.data.reader import ClipDataset  # noqa: E402
from kinema.data.video_io import decode_video, encode_video  # noqa: E402
from kinema.worlds.generate import episode_seed, generate  # noqa: E402
from kinema.worlds.registry import WORLDS, get_world  # noqa: E402
from kinema.worlds.rollout import rollout  # noqa: E402
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scenarios", default=",".join(WORLDS))
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"MUJOCO_GL={os.environ['MUJOCO_GL']}; date {time.strftime('%Y-%m-%d')}")
    print(f"one process, {args.episodes} episodes per run, {args.size}x{args.size}, median of {args.repeats} runs\n")
    print(f"| scenario | cams | frames/ep | steps/s end-to-end | camera frames/s end-to-end | sim-only steps/s | end-to-end / sim-only |")
    print("|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    totals = []
    for name in args.scenarios.split(","):
        world = get_world(name)
        n_cam = len(world.build(np.random.default_rng(0)).cameras)

        def full():
            out = tmp / name
            shutil.rmtree(out, ignore_errors=True)
            generate(name, args.episodes, 0, out, size=args.size, progress=False)

        def sim_only():
            for i in range(args.episodes):
                rollout(world, episode_seed(0, i), render=False)

        steps = args.episodes * world.frames
        t_full, t_sim = median_time(full, args.repeats), median_time(sim_only, args.repeats)
        totals.append(steps * n_cam / t_full)
        print(f"| {name} | {n_cam} | {world.frames} | {steps / t_full:.0f} | {steps * n_cam / t_full:.0f} | "
              f"{steps / t_sim:.0f} | {t_sim / t_full:.2f} |")
    print(f"\nmedian over scenarios: {statistics.median(totals):.0f} camera frames/s per process (one core for sim; "
          "the Mesa rasterizer may use a second thread)\n")

    # Reader: random access to 16-frame clips of a generated dataset.
    ds_root = tmp / "reader"
    generate("dominoes", 16, 1, ds_root, progress=False, frames=33)
    ds = ClipDataset(ds_root, 16)
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=workers,
                                             sampler=torch.utils.data.RandomSampler(ds, num_samples=256, generator=torch.Generator().manual_seed(0)))

        def read_all():
            for _ in loader:
                pass

        t = median_time(read_all, args.repeats)
        print(f"reader: {256 / t:.0f} clips/s (16 frames x 4 cameras + masks + audio, random access, num_workers={workers})")

    # Codec round trip on rendered frames.
    ep = rollout(get_world("dominoes"), 2, size=args.size)
    frames = np.concatenate([ep.frames[c] for c in ep.cameras])
    print("\n| codec preset | max abs error | mean abs error | PSNR dB | bytes/frame |")
    print("|---|---|---|---|---|")
    for codec in ("lossless", "yuv444", "preview"):
        path = tmp / f"rt-{codec}.mp4"
        encode_video(path, frames, ep.fps, codec=codec)
        back = decode_video(path)
        err = np.abs(back.astype(np.int32) - frames)
        mse = np.mean((err / 255.0) ** 2)
        psnr = float("inf") if mse == 0 else 10 * np.log10(1 / mse)
        print(f"| {codec} | {err.max()} | {err.mean():.3f} | {psnr:.1f} | {path.stat().st_size / len(frames):.0f} |")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
