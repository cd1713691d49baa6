"""World-model generation speed on this machine: seconds per 33-frame 64x64 clip, steps vs quality, fp32 vs bf16,
the context K/V cache's speed-up, GFLOP/s against the matmul peak, peak memory.

    python benchmarks/generate.py [--model checkpoints/world-model-small] [--runs 5] [--episodes 4] [--quick]

Workload: forward dynamics on held-out push episodes, as `kinema demo`: the first 9 frames of the front
camera and the episode's 33 recorded actions in, the other 24 frames out (one `Pipeline.run`, no
rollout chunking). A *clip* is the whole call: encode the 9 given frames with the video tokenizer,
sample the 96 noisy vision tokens against the context K/V cache, decode the 33 frames.

1. Step sweep, once per dtype (fp32, bf16), each in its own process: PSNR of the 24 predicted frames
   against the simulator (kinema.eval.metrics.psnr), averaged over the same `--episodes` held-out
   episodes (seed 0 noise) for every setting: dpmpp_2m at 35, 20, 15, 10, 8, 6, 4, 2 steps and euler
   at 35 and 10. "Fewest steps" is the smallest dpmpp_2m step count from which every larger swept count
   loses under 0.5 dB of mean PSNR against 35 steps, in both dtypes. Also printed: PSNR against the
   model's own 35-step output (how far a shorter run is from the converged sample).
2. Speed rows, one fresh process per (dtype, steps) with dpmpp_2m on episode 0: median of `--runs`
   timed calls after a warm-up, of the whole clip (split into tokenizer encode, sampling, decode as
   timed inside the call) and of the sampling alone (`Pipeline._denoise`: K/V cache of the context,
   then the sampler). The sampling is timed again without the cache: a copy of `_denoise` below that
   runs the full sequence (context + noisy tokens) through the model at every step and reads the noisy
   rows, asserted (fp32) to give the same x0 as the cached path; the ratio is the cache's speed-up.
   FLOPs come from torch's FlopCounterMode (matmuls, 2 per multiply-add; CPU attention,
   aten._scaled_dot_product_flash_attention_for_cpu, is not in its table and is counted here with
   torch's own SDPA formula); GFLOP/s = those FLOPs / median time; the matmul peak (fp32, bf16;
   benchmarks/tokenizer.py's helper) is timed in the same run. Peak memory is the high-water mark of
   the resident set of the row's fresh process, read before the no-cache runs.

The episodes are simulated in the parent process (MuJoCo's renderer stays out of the rows' memory).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from dataclasses import replace
from datetime import date
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kinema.diffusion import sample  # noqa: E402
from kinema.model.sequence import collate  # noqa: E402
from kinema.model.train import schedule_for  # noqa: E402
from timing import median_time  # noqa: E402  (benchmarks/timing.py)


def _tokenizer_bench():
    spec = importlib.util.spec_from_file_location("_bench_tokenizer", Path(__file__).with_name("tokenizer.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


matmul_peak = _tokenizer_bench().matmul_peak  # same peak measurement as the tokenizer benchmark

WORLD, CAMERA, CONTEXT, FRAMES = "push", "front", 9, 33
REF_STEPS, TOLERANCE_DB = 35, 0.5
SWEEP = [("dpmpp_2m", s) for s in (35, 20, 15, 10, 8, 6, 4, 2)] + [("euler", 35), ("euler", 10)]
QUICK_SWEEP = [("dpmpp_2m", 35), ("dpmpp_2m", 10), ("dpmpp_2m", 4), ("euler", 10)]


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)  # torch's formula for the GPU SDPA kernels


SDPA_CPU = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flop}  # missing from torch's table


# ------------------------------------------------------------ workload


def make_requests(episodes: int) -> list[dict]:
    """Held-out push episodes -> picklable requests (context, actions, prompt, ... and the 24 true frames)."""
    from kinema.eval.data import heldout_seed
    from kinema.eval.harness import request_from_episode
    from kinema.worlds.registry import get_world
    from kinema.worlds.rollout import rollout

    out = []
    for i in range(episodes):
        ep = rollout(get_world(WORLD), heldout_seed(i), size=64, frames=FRAMES)
        req = request_from_episode(ep, CAMERA, context=CONTEXT, future=FRAMES - CONTEXT)
        out.append(dict(seed=heldout_seed(i), context=req.context, actions=req.actions, prompt=req.prompt or "",
                        fps=req.fps, action_names=tuple(req.action_names), gt=ep.frames[CAMERA][CONTEXT:FRAMES]))
    return out


def load(model: str, dtype: str, threads: int | None):
    from kinema.model.pipeline import Pipeline

    if threads:
        torch.set_num_threads(threads)
    return Pipeline.from_pretrained(model, device="cpu", dtype=dtype)


def run_clip(pipe, req: dict, steps: int, sampler: str) -> np.ndarray:
    """One forward-dynamics clip; -> the 24 predicted frames. Carry off: the sweep measures the sampler, and carry
    (kinema.model.carry, 1.6 ms a clip whatever the steps) would shift every row's PSNR alike."""
    out = pipe.run("forward_dynamics", num_frames=FRAMES, context=req["context"], actions=req["actions"],
                   prompt=req["prompt"], fps=req["fps"], action_names=req["action_names"], num_steps=steps,
                   sampler=sampler, seed=0, carry=False)
    return out["frames"][CONTEXT:FRAMES]


class Instrument:
    """Wraps a pipeline's encode_frames / _denoise / decode_latents to time them and keep _denoise's arguments."""

    PARTS = ("encode_frames", "_denoise", "decode_latents")

    def __init__(self, pipe):
        self.times: dict[str, float] = {}
        self.denoise_args = None
        for name in self.PARTS:
            setattr(pipe, name, self._wrap(name, getattr(pipe, name)))

    def _wrap(self, name, fn):
        def timed(*a, **kw):
            if name == "_denoise":
                self.denoise_args = (a, kw)
            t = time.perf_counter()
            out = fn(*a, **kw)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t
            return out
        return timed


def denoise_no_cache(pipe, tok, guides, *, num_steps, shift, sampler, seed, progress=False,
                     strength=1.0) -> torch.Tensor:
    """Pipeline._denoise without the context cache: every step runs the whole sequence (context + noisy tokens)
    through the model and reads the noisy rows back. Same noise, schedule and sampler; -> all values [L, V]."""
    assert strength == 1.0, "the benchmark's forward dynamics starts from pure noise"
    seqs = [tok] + [u for u, _ in guides]
    full = collate(seqs).to(pipe.device)
    noisy = collate([s.select(s.gen) for s in seqs]).to(pipe.device)
    n, Ln, V = noisy.value.shape
    L = full.kind.shape[1]
    schedule = schedule_for(pipe.config)
    real = (torch.arange(V, device=pipe.device) < noisy.dims[0, :, None]).float()
    noise, _ = pipe.start(tok, real, seed)

    def denoise(x, t):
        value = full.value.clone()
        value[full.gen] = schedule.model_input(x, t).expand(n, Ln, V).float().reshape(n * Ln, V)
        with pipe._autocast():
            out = pipe.model(replace(full, value=value), schedule.noise_level(t).expand(n, L).float())
        x0 = schedule.to_x0(x, t, out[full.gen].reshape(n, Ln, V).float())
        x0 = x0[0] + sum((g - 1.0) * (x0[0] - x0[i + 1]) for i, (_, g) in enumerate(guides))
        return x0.reshape(Ln, V) * real

    x0 = sample(denoise, noise, schedule, num_steps=num_steps, sampler=sampler, shift=shift, progress=progress)
    values = tok.value.clone()
    values[tok.gen] = x0.float().cpu()
    return values


def flops_of(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU) as fc:
        fn()
    return fc.get_total_flops()


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------ rows (each in a fresh process)


def sweep_row(model, dtype, threads, reqs, settings) -> dict:
    """PSNR (vs simulator and vs the 35-step output) and seconds per clip of every setting, every episode."""
    from kinema.eval.metrics import psnr

    pipe = load(model, dtype, threads)
    run_clip(pipe, reqs[0], 2, "euler")  # warm-up
    ref = {}
    res = {}
    for sampler, steps in sorted(settings, key=lambda s: (s[1] != REF_STEPS or s[0] != "dpmpp_2m")):  # 35 first
        vs_sim, vs_ref, secs = [], [], []
        for i, req in enumerate(reqs):
            t = time.perf_counter()
            pred = run_clip(pipe, req, steps, sampler)
            secs.append(time.perf_counter() - t)
            vs_sim.append(psnr(pred, req["gt"]).value)
            if (sampler, steps) == ("dpmpp_2m", REF_STEPS):
                ref[i] = pred
            vs_ref.append(psnr(pred, ref[i]).value if i in ref else float("nan"))
        res[f"{sampler}:{steps}"] = dict(sampler=sampler, steps=steps, psnr=float(np.mean(vs_sim)), psnr_per_episode=vs_sim,
                                         psnr_vs_ref=float(np.mean(vs_ref)), sec_per_clip=float(np.median(secs)))
    return dict(settings=res, peak_mb=peak_mb())


def speed_row(model, dtype, threads, req, steps, runs) -> dict:
    pipe = load(model, dtype, threads)
    params = pipe.model.num_parameters()
    inst = Instrument(pipe)
    run_clip(pipe, req, steps, "dpmpp_2m")  # warm-up (oneDNN picks kernels on first use), captures _denoise's args
    (tok, guides), kw = inst.denoise_args
    cached = pipe.__class__._denoise.__get__(pipe)  # the real, unwrapped method

    clip_flops = flops_of(lambda: run_clip(pipe, req, steps, "dpmpp_2m"))
    sample_flops = flops_of(lambda: cached(tok, guides, **kw))
    ctx = collate([tok.select(~tok.gen)])
    context_flops = flops_of(lambda: pipe.model.encode_context(ctx))
    nocache_flops = flops_of(lambda: denoise_no_cache(pipe, tok, guides, **kw))

    parts = {k: [] for k in Instrument.PARTS}
    clip_times = []
    for _ in range(runs):
        inst.times.clear()
        t = time.perf_counter()
        run_clip(pipe, req, steps, "dpmpp_2m")
        clip_times.append(time.perf_counter() - t)
        for k in parts:
            parts[k].append(inst.times.get(k, 0.0))
    t_clip = statistics.median(clip_times)
    t_sample = median_time(lambda: cached(tok, guides, **kw), runs)
    peak = peak_mb()

    # The comparison is only honest if both paths compute the same thing.
    with_cache, without = cached(tok, guides, **kw)[tok.gen], denoise_no_cache(pipe, tok, guides, **kw)[tok.gen]
    diff = float((with_cache - without).abs().max() / with_cache.abs().max().clamp_min(1e-12))
    if dtype == "fp32" and diff > 1e-3:
        raise AssertionError(f"no-cache sampling differs from the cached one: max |dx0| / max |x0| = {diff:.2e}")
    denoise_no_cache(pipe, tok, guides, **kw)  # warm-up of the longer sequence's kernels
    t_nocache = median_time(lambda: denoise_no_cache(pipe, tok, guides, **kw), runs)

    c = pipe.config
    Ln, Lc = int(tok.gen.sum()), int((~tok.gen).sum())
    active = 4 * c.width**2 + 3 * c.width * c.hidden  # one expert's Q/K/V/O + SwiGLU weights per layer
    analytic = c.depth * (2 * active * Ln + 4 * Ln * (Lc + Ln) * c.width)
    return dict(dtype=dtype, steps=steps, sampler="dpmpp_2m", params=params, tokens_context=Lc, tokens_noisy=Ln,
                sec_clip=t_clip, sec_parts={name: statistics.median(parts[k]) for name, k in
                                                     (("encode", "encode_frames"), ("sample", "_denoise"), ("decode", "decode_latents"))},
                sec_sample=t_sample, sec_sample_nocache=t_nocache, cache_speedup=t_nocache / t_sample,
                nocache_max_rel_diff=diff, flops_clip=clip_flops, flops_sample=sample_flops,
                flops_context=context_flops, flops_step=(sample_flops - context_flops) / steps,
                flops_step_nocache=nocache_flops / steps, flops_step_analytic=analytic,
                gflops_clip=clip_flops / t_clip / 1e9, gflops_sample=sample_flops / t_sample / 1e9,
                gflops_sample_nocache=nocache_flops / t_nocache / 1e9, peak_mb=peak, peak_mb_with_nocache=peak_mb())


def _child(fn, args, q) -> None:
    try:
        q.put(("ok", fn(*args)))
    except BaseException:  # report, so the parent does not wait forever
        q.put(("error", traceback.format_exc()))


def spawn(fn, *args) -> dict:
    """fn(*args) in a fresh process, so that its ru_maxrss is this row's peak."""
    ctx = mp.get_context("spawn")  # not fork: a forked child inherits a busy OpenMP pool and can hang
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    status, out = q.get()
    p.join()
    if status != "ok":
        raise RuntimeError(f"{fn.__name__}{args[:2]} failed in its process:\n{out}")
    return out


# ------------------------------------------------------------ main


def fewest_steps(settings: dict) -> int:
    """Smallest dpmpp_2m step count from which every swept count loses under TOLERANCE_DB against REF_STEPS."""
    ref = settings[f"dpmpp_2m:{REF_STEPS}"]["psnr"]
    steps = sorted((s["steps"] for s in settings.values() if s["sampler"] == "dpmpp_2m"), reverse=True)
    best = REF_STEPS
    for s in steps:
        if settings[f"dpmpp_2m:{s}"]["psnr"] > ref - TOLERANCE_DB:
            best = s
        else:
            break
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "checkpoints" / "world-model-small"))
    ap.add_argument("--runs", type=int, default=None, help="timed runs per row, median printed (default 5; --quick 2)")
    ap.add_argument("--episodes", type=int, default=None, help="held-out episodes of the step sweep (default 4; --quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "generate.json"))
    ap.add_argument("--quick", action="store_true", help="1 episode, 2 runs, 35/10/4 dpmpp_2m and euler 10")
    args = ap.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    episodes = args.episodes or (1 if args.quick else 4)
    settings = QUICK_SWEEP if args.quick else SWEEP
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (Path(args.model) / "model.safetensors").exists():
        sys.exit(f"no world model at {args.model} (expected config.json, model.safetensors, tokenizer.json)")
    t_start = time.time()

    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    peaks = {"fp32": peak32, "bf16": peak16}
    print(f"# world-model generation speed — {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {date.today()}, median of {runs} runs; model {args.model}")
    print(f"workload: forward dynamics, {WORLD}/{CAMERA} held-out episodes, {CONTEXT} given + {FRAMES - CONTEXT} predicted "
          f"frames ({FRAMES}-frame 64x64 clip), batch 1, no guidance")
    print(f"matmul peak (2048^3): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s\n", flush=True)

    reqs = make_requests(episodes)
    sweep = {dt: spawn(sweep_row, args.model, dt, args.threads, reqs, settings) for dt in ("fp32", "bf16")}
    fewest = {dt: fewest_steps(sweep[dt]["settings"]) for dt in sweep}
    chosen = max(fewest.values())

    print(f"## steps vs quality ({episodes} episode{'s' * (episodes > 1)}, seeds "
          f"{', '.join(str(r['seed']) for r in reqs)}; PSNR of the {FRAMES - CONTEXT} predicted frames)\n")
    print("| sampler | steps | fp32 PSNR vs sim | Δ vs 35 | bf16 PSNR vs sim | Δ vs 35 | fp32 PSNR vs own 35-step | "
          "bf16 PSNR vs own 35-step | fp32 s/clip | bf16 s/clip |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, a in sweep["fp32"]["settings"].items():
        b = sweep["bf16"]["settings"][key]
        ra, rb = (sweep[d]["settings"][f"dpmpp_2m:{REF_STEPS}"]["psnr"] for d in ("fp32", "bf16"))
        own = lambda r: "–" if (r["sampler"], r["steps"]) == ("dpmpp_2m", REF_STEPS) else f"{r['psnr_vs_ref']:.2f}"  # noqa: E731
        print(f"| {a['sampler']} | {a['steps']} | {a['psnr']:.2f} | {a['psnr'] - ra:+.2f} | {b['psnr']:.2f} | "
              f"{b['psnr'] - rb:+.2f} | {own(a)} | {own(b)} | {a['sec_per_clip']:.2f} | {b['sec_per_clip']:.2f} |")
    print(f"\nfewest dpmpp_2m steps losing under {TOLERANCE_DB} dB against {REF_STEPS}: fp32 {fewest['fp32']}, "
          f"bf16 {fewest['bf16']} -> {chosen} (bf16 at {REF_STEPS} steps vs fp32: "
          f"{sweep['bf16']['settings'][f'dpmpp_2m:{REF_STEPS}']['psnr'] - sweep['fp32']['settings'][f'dpmpp_2m:{REF_STEPS}']['psnr']:+.2f} dB)\n",
          flush=True)

    rows = [spawn(speed_row, args.model, dt, args.threads, reqs[0], s, runs)
            for s in dict.fromkeys((REF_STEPS, chosen)) for dt in ("fp32", "bf16")]
    r0 = rows[0]
    print(f"## speed (episode seed {reqs[0]['seed']}, dpmpp_2m; {r0['params'] / 1e6:.1f}M parameters, "
          f"{r0['tokens_context']} context + {r0['tokens_noisy']} noisy tokens)\n")
    print("| dtype | steps | s/clip | encode / sample / decode s | sampling s | sampling s, no cache | cache speed-up | "
          "GFLOP/step (no cache) | sampling GFLOP/s (% peak) | clip GFLOP/s (% peak) | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["sec_parts"]
        pk = peaks[r["dtype"]]
        print(f"| {r['dtype']} | {r['steps']} | {r['sec_clip']:.2f} | {p['encode']:.3f} / {p['sample']:.2f} / "
              f"{p['decode']:.3f} | {r['sec_sample']:.2f} | {r['sec_sample_nocache']:.2f} | "
              f"{r['cache_speedup']:.2f}x | {r['flops_step'] / 1e9:.3f} ({r['flops_step_nocache'] / 1e9:.3f}) | "
              f"{r['gflops_sample']:.0f} ({100 * r['gflops_sample'] / pk:.0f}%) | "
              f"{r['gflops_clip']:.0f} ({100 * r['gflops_clip'] / pk:.0f}%) | {r['peak_mb']:.0f} |")
    by = {(r["dtype"], r["steps"]): r for r in rows}
    print(f"\nseconds per {FRAMES}-frame 64x64 clip: {REF_STEPS} steps fp32 {by['fp32', REF_STEPS]['sec_clip']:.2f} s, "
          f"bf16 {by['bf16', REF_STEPS]['sec_clip']:.2f} s; {chosen} steps fp32 {by['fp32', chosen]['sec_clip']:.2f} s, "
          f"bf16 {by['bf16', chosen]['sec_clip']:.2f} s")
    print(f"FLOPs per step counted {r0['flops_step'] / 1e9:.3f} G, analytic {r0['flops_step_analytic'] / 1e9:.3f} G "
          f"(2·{r0['tokens_noisy']} tokens·one expert's weights + attention, no embeddings or heads); "
          f"no-cache vs cache x0: max relative difference {r0['nocache_max_rel_diff']:.1e} (fp32)")
    print(f"[{time.time() - t_start:.0f} s]")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        date=str(date.today()), machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
        torch=torch.__version__, model=str(args.model), runs=runs, quick=args.quick,
        matmul_peak_gflops=peaks, episodes=[r["seed"] for r in reqs], tolerance_db=TOLERANCE_DB,
        fewest_steps=fewest, chosen_steps=chosen, sweep=sweep, speed=rows), indent=1) + "\n")
    print(f"json: {out}")


if __name__ == "__main__":
    main()
