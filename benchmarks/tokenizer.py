"""Tokenizer speed on this machine: encode + decode ms/frame, fp32 vs bf16, GFLOP/s against the matmul peak, peak memory.

    python benchmarks/tokenizer.py [--runs 5] [--quick]

For each configuration (the shipped small CV and DV 4x8x8 tokenizers, and the
published Cosmos 128-channel [2,4,4] configuration with random weights, which
costs the same as trained ones) and each size (64x64, 256x256), one 17-frame clip
(batch 1) is encoded and decoded `runs` times after a warm-up; the median is
printed. FLOPs come from torch's FlopCounterMode (convolutions and matmuls, 2 per
multiply-add); the matmul peak is a 2048^3 matmul timed in the same process, so
"% of peak" compares like with like. Peak memory is the high-water mark of the
resident set of a fresh process that runs one configuration (a spawned process per row).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.tokenize.load import load_tokenizer  # noqa: E402
from kinema.tokenize.video import VideoTokenizer, get_preset  # noqa: E402

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
T = 17


def build(name: str):
    if name.startswith("shipped:"):
        return load_tokenizer(CHECKPOINTS / name.split(":", 1)[1])
    torch.manual_seed(0)
    return VideoTokenizer(get_preset(name)).eval()


def roundtrip(model, x, bf16: bool):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        z = model.encode(x)
        return model.decode(z[0] if model.cfg.discrete else z)


def matmul_peak(dtype, n: int = 2048, runs: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e9


def measure(name: str, size: int, bf16: bool, runs: int, q) -> None:
    """One row, in its own process so that ru_maxrss is this configuration's peak."""
    model = build(name)
    x = torch.rand(1, 3, T, size, size) * 2 - 1
    with FlopCounterMode(display=False) as fc:
        roundtrip(model, x, False)
    flops = fc.get_total_flops()
    roundtrip(model, x, bf16)  # warm-up (oneDNN picks kernels on first use)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        roundtrip(model, x, bf16)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    q.put(dict(ms_per_frame=1000 * med / T, gflops=flops / med / 1e9, gflop_per_frame=flops / T / 1e9,
               params=sum(p.numel() for p in model.parameters()), peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def train_step_time(name: str, bf16: bool, runs: int, batch: int = 8) -> float:
    """Seconds per optimizer step (MSE loss, AdamW) on a batch of 17-frame 64x64 clips."""
    torch.manual_seed(0)
    model = VideoTokenizer(get_preset(name))
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    x = torch.rand(batch, 3, T, 64, 64) * 2 - 1

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y, _ = model(x)
        loss = ((y.float() - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="tiny preset at 64x64 only (used by the tests)")
    args = ap.parse_args()
    if args.quick:
        configs, sizes = ["cv4x8x8-tiny"], [64]
    else:
        configs = [n for n in ("shipped:tokenizer-cv4x8x8", "shipped:tokenizer-dv4x8x8") if (CHECKPOINTS / n.split(":")[1]).is_dir()]
        configs += ["cv4x8x8-cosmos"]
        sizes = [64, 256]
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"# tokenizer speed — {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {date.today()}, median of {args.runs} runs, clip of {T} frames, batch 1")
    print(f"matmul peak (2048^3): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s\n")
    print("| tokenizer | params | size | GFLOP/frame | fp32 ms/frame | bf16 ms/frame | bf16 speed-up | fp32 GFLOP/s (% peak) | bf16 GFLOP/s (% peak) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ctx = mp.get_context("spawn")  # not fork: a forked child inherits a busy OpenMP pool and can hang
    for name in configs:
        for size in sizes:
            row = {}
            for bf16 in (False, True):
                q = ctx.Queue()
                p = ctx.Process(target=measure, args=(name, size, bf16, args.runs, q))
                p.start()
                row[bf16] = q.get()
                p.join()
            a, b = row[False], row[True]
            print(f"| {name} | {a['params'] / 1e6:.1f}M | {size} | {a['gflop_per_frame']:.3f} | {a['ms_per_frame']:.1f} | "
                  f"{b['ms_per_frame']:.1f} | {a['ms_per_frame'] / b['ms_per_frame']:.2f}x | "
                  f"{a['gflops']:.0f} ({100 * a['gflops'] / peak32:.0f}%) | {b['gflops']:.0f} ({100 * b['gflops'] / peak16:.0f}%) | "
                  f"{max(a['peak_mb'], b['peak_mb']):.0f} |", flush=True)
    train = "cv4x8x8-tiny" if args.quick else "cv4x8x8-small"
    f32, b16 = train_step_time(train, False, args.runs), train_step_time(train, True, args.runs)
    print(f"\ntraining step ({train}, batch 8 x {T} frames at 64x64, MSE + AdamW): fp32 {f32:.3f} s, bf16 {b16:.3f} s "
          f"-> bf16 is {f32 / b16:.2f}x faster")


if __name__ == "__main__":
    main()
