"""Simulate episodes and encode them straight into latent shards, the reasoner's or the world model's, with no
dataset on disk.

    python scripts/simulate_latents.py --out RUN/shards --workers 15 --device cuda \
        free_fall:48:0 push:48:3:random dominoes:24:4:twins ...
    python scripts/simulate_latents.py --kind world --out RUN/latents --workers 15 --device cuda \
        push:120:30 push:48:30:random camera_motion:96:30 free_fall:48:30 ...

Each SET is SCENARIO:EPISODES:SEED, optionally :twins (each episode and its implausible twin, as
`kinema worlds generate --twins`), :random (the random arm policy) or :noisyEPS (the noisy expert,
`--policy noisy_expert:EPS`: episodes that succeed and fail under one policy). The episodes are exactly those `kinema
worlds generate` makes with the same arguments (64x64, the world's own fps and length), and each set's shard holds
what `kinema train` builds from that dataset over an EpisodeList: with --kind reason (the default) the reasoner's
questions (kinema.model.reason_data.build_reason_latents), which `kinema train --reason-data OUT` trains on; with
--kind world the generator's clips (kinema.model.data.build_latents), which `kinema train --data OUT` trains on.
This is the data path for a GPU machine that has MuJoCo but neither a video codec nor room for the datasets:
simulation runs in parallel worker processes while the main process encodes the finished sets on the device.

Resumable: a set whose shard is complete is skipped. With --deadline, no set starts after that many seconds (the
sets finished by then are kept; the others are listed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from kinema.model.data import shard_complete  # noqa: E402
from kinema.model.reason_data import shard_current  # noqa: E402
from kinema.worlds.generate import make_plan, simulate_item  # noqa: E402
from kinema.worlds.registry import get_world  # noqa: E402
from kinema.worlds.tabletop import parse_policy  # noqa: E402


def parse_set(spec: str) -> dict:
    parts = spec.split(":")
    try:
        scenario, episodes, seed = parts[0], int(parts[1]), int(parts[2])
        kind = parts[3] if len(parts) > 3 else "expert"
        policy = {"random": "random"}.get(kind, f"noisy_expert:{kind[5:]}" if kind.startswith("noisy") else "expert")
        if len(parts) > 4 or not (kind in ("expert", "twins", "random") or kind.startswith("noisy")):
            raise ValueError
        parse_policy(policy)
        get_world(scenario)
    except (IndexError, ValueError, KeyError) as e:
        raise SystemExit(f"set {spec!r}: expected SCENARIO:EPISODES:SEED[:twins|:random|:noisyEPS] with a known "
                         f"scenario ({e})")
    plan = make_plan(scenario, episodes, seed, 64, None, None, kind == "twins", policy)
    return dict(name=f"{scenario}-{kind}-s{seed}", plan=plan)


def _simulate(job):
    """Worker: one episode (its masks tell which questions each camera can answer)."""
    s, i, item, plan = job
    return s, i, simulate_item(item, plan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", metavar="SET")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--kind", default="reason", choices=("reason", "world"),
                    help="the reasoner's question shards (default) or the world model's clip shards")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--device", default="cpu", help="where the tokenizers encode (cpu, cuda)")
    ap.add_argument("--video-tokenizer", default="checkpoints/tokenizer-cv4x8x8")
    ap.add_argument("--audio-tokenizer", default="checkpoints/tokenizer-audio")
    ap.add_argument("--deadline", type=float, default=None, help="seconds after which no set starts")
    args = ap.parse_args()
    t0 = time.perf_counter()
    sets = [parse_set(s) for s in args.sets]  # bad specs fail before any compute
    args.out.mkdir(parents=True, exist_ok=True)
    done = shard_current if args.kind == "reason" else lambda path, _: shard_complete(path)
    todo = [k for k, s in enumerate(sets) if not done(args.out / f"{s['name']}.safetensors", True)]

    from kinema.data.reader import EpisodeList
    from kinema.model.data import build_latents
    from kinema.model.reason_data import build_reason_latents
    from kinema.tokenize.load import load_tokenizer

    build = build_reason_latents if args.kind == "reason" else build_latents

    video = load_tokenizer(args.video_tokenizer, "video_tokenizer", args.device)
    audio = load_tokenizer(args.audio_tokenizer, "audio_tokenizer", args.device)
    pending = {k: [None] * len(sets[k]["plan"]["items"]) for k in todo}
    left = {k: len(v) for k, v in pending.items()}
    jobs = [(k, i, item, sets[k]["plan"]) for k in todo for i, item in enumerate(sets[k]["plan"]["items"])]
    started, cut = set(), None
    bar = tqdm(total=len(jobs), desc="simulate", unit="ep")
    with mp.get_context("spawn").Pool(args.workers) as pool:
        for k, i, ep in pool.imap_unordered(_simulate, jobs):
            bar.update()
            started.add(k)
            pending[k][i] = ep
            left[k] -= 1
            if left[k] == 0:  # a whole set: encode it while the workers simulate the next ones
                store = EpisodeList(pending.pop(k), sets[k]["name"])
                build([store], args.out, video, audio, batch=64, progress=False)
                bar.write(f"{sets[k]['name']}: {len(store)} episodes encoded ({time.perf_counter() - t0:.0f} s)")
            if cut is None and args.deadline and time.perf_counter() - t0 > args.deadline:
                cut = set(started)  # past the deadline: finish the sets begun, start no other
            if cut is not None and not cut & pending.keys():
                break
        pool.terminate()
    bar.close()
    missing = [sets[k]["name"] for k in pending]
    done = len(sets) - len(missing)
    print(f"{done} of {len(sets)} sets in {args.out} after {time.perf_counter() - t0:.0f} s"
          + (f"; not made (deadline): {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
