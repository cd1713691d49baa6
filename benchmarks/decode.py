"""Autoregressive world-model decoding speed on this machine: tokens/s without the KV cache, with it, and with it
plus Medusa; time to first token; Medusa's accepted length; frames per second of 64x64 video generation.

    python benchmarks/decode.py [--model checkpoints/ar-world-model-small] [--runs 3] [--threads 1]

Everything is greedy, fp32, batch 1, in one process (ratios are taken between numbers measured side by side),
and every timed path is checked to produce the same codes as plain cached greedy decoding.

1. Long contexts: 1,024 and 4,096 context tokens (16 and 64 latent frames of 8x8 codes) of RANDOM codes
   (speed does not depend on what the codes are; Medusa's acceptance does, so it is reported separately on
   real clips below), then one more latent frame (64 codes) is generated. Positions run past the 9 latent
   frames the model was trained on: this row measures speed, not predictions.
     time to first token  prefill of the context (one forward, K/V kept) + the first code's logits
     cache tok/s          the other 63 codes / (generate(cache=True) time - time to first token)
     no-cache tok/s       codes / time when each code recomputes the whole prefix (generate(cache=False)'s
                          loop, timed on its first `--nocache-tokens` codes)
     Medusa tok/s         the other 63 codes / (Medusa time - time to first token)
2. Real clips (needs --heldout, default outputs/data/heldout, encoded once with the DV tokenizer into
   --heldout-codes): 3 given latent frames (9 video frames) -> 6 generated latent frames (24 frames, 384 codes)
   per clip, as the predictor does: for each tree (the Medusa heads' own, the copy chain alone, both: medusa.py)
   the mean accepted length (codes per verification forward, root included), tokens/s and frames/s, and
   end-to-end frames/s with DV encode and decode.
   Sampled decoding (temperature 1.0, top-p 0.8, REFERENCE §3) is timed too: its tokens/s is the cached
   loop plus top-p over 64,000 codes.
   The same clips entropy-coded under the model (kinema.model.ar_codec, the DV rate in BENCHMARKS.md's
   "Tokenizers"): compress and decompress seconds a clip (every code one cached forward, both ways), bits a clip
   against the fixed-length 15.97 a code; every decoded clip must equal its codes.
3. The reasoner (--reasoner, default checkpoints/world-model-small): a 33-frame 64x64 clip (random pixels:
   speed only) and a question; time to first token (video encode + prompt prefill + first logits) and text
   tokens/s with and without the KV cache over --reasoner-tokens new tokens (the stop token is disabled so
   every run writes the same count). Several checkpoints after --reasoner are timed side by side, their runs
   interleaved; --only-reasoner times these rows alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kinema.model.autoregressive import AR_SAMPLING, load_model  # noqa: E402
from kinema.model.decoding import SamplingParams  # noqa: E402
from kinema.model.medusa import COPY, COPY_CHAIN, DEFAULT_TREE, HEAD_TREE, HEADS_AND_COPY, medusa_generate  # noqa: E402
from timing import timed  # noqa: E402  (benchmarks/timing.py)

GREEDY = SamplingParams(temperature=0)
GRID = 8  # 64x64 frames -> 8x8 codes per latent frame
# medusa.py's trees (name -> (tree, options)); the copy chain gated (the default) at three depths and not gated,
# and as it was before the gate (4 deep, ungated)
TREES = {"Medusa heads": (HEAD_TREE, {}), "copy chain": (COPY_CHAIN, {}),
         "copy chain, 8 deep": (COPY_CHAIN[:8], {}), "copy chain, 16 deep": ([(COPY,) * d for d in range(1, 17)], {}),
         "copy chain, ungated": (COPY_CHAIN, {"gate_copies": False}),
         "copy chain, 4 deep, ungated": (COPY_CHAIN[:4], {"gate_copies": False}),
         "Medusa heads + copy chain": (HEADS_AND_COPY, {})}
DEFAULT = next(name for name, (tree, opt) in TREES.items() if tree == DEFAULT_TREE and not opt)


@torch.no_grad()
def first_token(model, ctx, T):
    """Prefill + the first generated code, exactly generate()'s first step."""
    tok, first = model.prepare(ctx, T, None, 0, 16.0)
    h, _ = model(tok.slice(0, first), keep_cache=True)
    return model.logits(h[:, -1]).argmax(-1)


@torch.no_grad()
def no_cache_codes(model, ctx, T, n):
    """generate(cache=False)'s loop for the first n codes: a full forward over the prefix per code."""
    tok, first = model.prepare(ctx, T, None, 0, 16.0)
    out = []
    for p in range(first, first + n):
        h, _ = model(tok.slice(0, p))
        tok.index[:, p] = model.logits(h[:, -1]).argmax(-1)
        out.append(int(tok.index[0, p]))
    return out


def long_context_row(model, n_ctx_frames: int, runs: int, nocache_tokens: int) -> dict:
    g = torch.Generator().manual_seed(n_ctx_frames)
    ctx = torch.randint(0, model.config.vocab_size, (1, n_ctx_frames, GRID, GRID), generator=g)
    T, new = n_ctx_frames + 1, GRID * GRID
    model.generate(ctx, T, params=GREEDY)  # warm-up (oneDNN picks kernels on first use)
    ttft, _ = timed(lambda: first_token(model, ctx, T), runs)
    t_cache, ref = timed(lambda: model.generate(ctx, T, params=GREEDY), runs)
    t_nc, nc = timed(lambda: no_cache_codes(model, ctx, T, nocache_tokens), max(1, runs - 1))
    if nc != ref[0, -1].reshape(-1)[:nocache_tokens].tolist():
        raise AssertionError("no-cache decoding gave other codes than cached decoding")
    row = dict(context_tokens=n_ctx_frames * new, new_tokens=new, ttft_s=ttft, cache_total_s=t_cache,
               cache_tok_s=(new - 1) / (t_cache - ttft), nocache_tokens=nocache_tokens,
               nocache_tok_s=nocache_tokens / t_nc)
    t_med, (codes, stats) = timed(lambda: medusa_generate(model, ctx, T), runs)  # the default tree
    if not torch.equal(codes, ref):
        raise AssertionError("speculative greedy gave other codes than plain greedy decoding")
    row.update(medusa_total_s=t_med, medusa_tok_s=(new - 1) / (t_med - ttft),
               medusa_mean_accepted=stats["mean_accepted"], medusa_forwards=stats["forwards"])
    row["cache_speedup"] = row["cache_tok_s"] / row["nocache_tok_s"]
    row["medusa_speedup_over_cache"] = row["medusa_tok_s"] / row["cache_tok_s"]
    return row


def heldout_clips(model, heldout: str, codes_dir: str, n: int, video_tokenizer) -> list[dict]:
    from kinema.model.ar_data import CodeClips, build_codes

    shards = build_codes(heldout, codes_dir, video_tokenizer, progress=False)
    ds = CodeClips(shards, model.config)
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].tolist()
    return [dict(ds.codes(i), world=ds.clips[i]["world"], camera=ds.clips[i]["camera"]) for i in order]


def real_clip_row(model, clips: list[dict], runs: int, vt, context: int = 3) -> dict:
    from kinema.tokenize.data import to_model, to_uint8

    tc = model.config.temporal_compression
    trees = {k: v for k, v in TREES.items() if model.medusa is not None or "Medusa" not in k}
    res = dict(clips=len(clips), context_latent_frames=context, t_cache=[], t_sample=[], t_e2e=[],
               worlds=[c["world"] for c in clips], t_tree={k: [] for k in trees}, accepted={k: [] for k in trees},
               plain={k: 0 for k in trees})
    for c in clips:
        lat, T = c["indices"][None], c["indices"].shape[0]
        kw = dict(actions=c["actions"][None] if c["actions"] is not None else None, domain=c["domain"], fps=c["fps"])
        ctx = lat[:, :context]
        model.generate(ctx, T, params=GREEDY, **kw)  # warm-up
        t, ref = timed(lambda: model.generate(ctx, T, params=GREEDY, **kw), runs)
        res["t_cache"].append(t)
        for name, (tree, opt) in trees.items():
            t, (codes, stats) = timed(lambda: medusa_generate(model, ctx, T, tree=tree, **opt, **kw), runs)
            if not torch.equal(codes, ref):
                raise AssertionError(f"{c['world']}: {name} greedy gave other codes than plain greedy decoding")
            res["t_tree"][name].append(t)
            res["accepted"][name] += stats["accepted"]
            res["plain"][name] += stats["plain"]
        t, _ = timed(lambda: model.generate(ctx, T, params=AR_SAMPLING, **kw), runs)
        res["t_sample"].append(t)
        frames = to_uint8(vt.decode(lat, num_frames=1 + tc * (context - 1))[0])  # context frames as pixels

        def end_to_end():
            idx, _ = vt.encode(to_model(frames)[None])
            out = medusa_generate(model, idx, T, **kw)[0]  # the default tree
            return vt.decode(out, num_frames=1 + tc * (T - 1))

        t, _ = timed(end_to_end, runs)
        res["t_e2e"].append(t)
    new_tokens = (clips[0]["indices"].shape[0] - context) * GRID * GRID
    new_frames = tc * (clips[0]["indices"].shape[0] - context)
    mean = statistics.mean
    out = dict(clips=len(clips), worlds=res["worlds"], new_tokens_per_clip=new_tokens,
               new_frames_per_clip=new_frames, cache_tok_s=new_tokens / mean(res["t_cache"]),
               cache_fps=new_frames / mean(res["t_cache"]), sample_tok_s=new_tokens / mean(res["t_sample"]),
               sample_fps=new_frames / mean(res["t_sample"]), end_to_end_fps=new_frames / mean(res["t_e2e"]))
    out["trees"] = {name: dict(mean_accepted=mean(res["accepted"][name]), forwards=len(res["accepted"][name]),
                               plain=res["plain"][name],
                               tok_s=new_tokens / mean(res["t_tree"][name]), fps=new_frames / mean(res["t_tree"][name]),
                               speedup_over_cache=mean(res["t_cache"]) / mean(res["t_tree"][name]))
                    for name in trees}
    return out


def codec_row(model, clips: list[dict], runs: int) -> dict:
    from kinema.model.ar_codec import compress, decompress

    t_c, t_d, bits, codes = [], [], 0, 0
    for c in clips:
        x = c["indices"]
        t, data = timed(lambda: compress(model, x), runs)
        t_c.append(t)
        t, back = timed(lambda: decompress(model, data), runs)
        t_d.append(t)
        if not torch.equal(back, x):
            sys.exit(f"entropy coding: a {c['world']} clip did not decode to its codes")
        bits, codes = bits + 8 * len(data), codes + x.numel()
    return dict(compress_s=statistics.median(t_c), decompress_s=statistics.median(t_d), bits_per_code=bits / codes,
                codes_per_clip=codes // len(clips))


def reasoner_row(path: str, runs: int, new_tokens: int) -> dict:
    import numpy as np

    from kinema.model.reasoner import Reasoner

    r = Reasoner.from_pretrained(path, device="cpu", dtype="fp32")
    r.stop_ids = set()  # time a fixed number of tokens
    frames = np.random.default_rng(0).integers(0, 256, (33, 64, 64, 3), dtype=np.uint8)
    msgs = [{"role": "user", "content": [{"type": "video", "video": frames, "fps": 16},
                                         {"type": "text", "text": "Describe what happens in the video."}]}]
    params = SamplingParams(temperature=0, max_new_tokens=new_tokens)
    def first():  # the clip encoded, the prompt run, the first token chosen
        prompt = r.prompt(msgs)
        next(r.generate_ids(prompt, SamplingParams(max_new_tokens=1)))
        return prompt

    ttft, prompt = timed(first, runs)
    t_cache, ids = timed(lambda: list(r.generate_ids(prompt, params)), runs)
    t_full, ids_full = timed(lambda: list(r.generate_ids(prompt, params, use_cache=False)), runs)
    assert ids == ids_full, "cached and recomputed reasoner decoding disagree"
    t_prefill, _ = timed(lambda: r._run(prompt, None), runs)
    # past the prefill, generate_ids runs one forward per yielded token, the last one's included (it would be
    # read for the token after it), so the decoding time holds new_tokens forwards (and samplings)
    return dict(prompt_tokens=len(prompt), new_tokens=new_tokens, ttft_s=ttft, prefill_s=t_prefill,
                cache_tok_s=new_tokens / (t_cache - t_prefill), nocache_tok_s=new_tokens / (t_full - t_prefill),
                cache_speedup=(t_full - t_prefill) / (t_cache - t_prefill))


def reasoner_rows(paths: list[str], runs: int, new_tokens: int) -> list[dict]:
    """reasoner_row (median of `runs`) for each checkpoint, three times over, interleaved so each sees the same
    machine; the median of the three."""
    if not paths:
        return []
    per = [[] for _ in paths]
    for _ in range(3):
        for i, p in enumerate(paths):
            per[i].append(reasoner_row(p, runs, new_tokens))
    rows = [{k: (statistics.median(r[k] for r in rs) if isinstance(rs[0][k], float) else rs[0][k]) for k in rs[0]}
            for rs in per]
    print(f"\n## the reasoner: a 33-frame clip + question = {rows[0]['prompt_tokens']} prompt tokens, "
          f"{rows[0]['new_tokens']} new text tokens\n")
    print("| checkpoint | time to first token s | prefill s | no-cache tok/s | cache tok/s | cache speed-up |")
    print("|---|---|---|---|---|---|")
    for p, r in zip(paths, rows):
        print(f"| {p} | {r['ttft_s']:.3f} | {r['prefill_s']:.3f} | {r['nocache_tok_s']:.1f} | "
              f"{r['cache_tok_s']:.1f} | {r['cache_speedup']:.1f}x |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "checkpoints" / "ar-world-model-small"))
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement, median reported")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, all cores)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[16, 64], help="context latent frames (64 codes each)")
    ap.add_argument("--nocache-tokens", type=int, default=4)
    ap.add_argument("--heldout", default=str(ROOT / "outputs" / "data" / "heldout"))
    ap.add_argument("--heldout-codes", default=str(ROOT / "outputs" / "runs" / "ar-small" / "codes-heldout"))
    ap.add_argument("--clips", type=int, default=4, help="held-out clips of the real-clip rows")
    ap.add_argument("--json", default=str(ROOT / "outputs" / "bench" / "decode.json"))
    ap.add_argument("--reasoner", nargs="+", default=[str(ROOT / "checkpoints" / "world-model-small")],
                    help="world-model checkpoints whose reasoner is timed, side by side (runs interleaved)")
    ap.add_argument("--only-reasoner", action="store_true", help="time the reasoner rows alone")
    ap.add_argument("--reasoner-tokens", type=int, default=32)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only_reasoner:
        print(f"# reasoner decoding — {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
              f"thread(s), torch {torch.__version__}, {date.today()}, median of 3 x {args.runs} runs; greedy, fp32")
        reasoner_rows(args.reasoner, args.runs, args.reasoner_tokens)
        return
    if not (Path(args.model) / "model.safetensors").exists():
        sys.exit(f"no AR world model at {args.model} (expected config.json and model.safetensors)")
    from kinema.tokenize.load import load_tokenizer

    t_start = time.time()
    model = load_model(args.model)
    vt = load_tokenizer(Path(args.model).parent / model.config.video_tokenizer, "video_tokenizer")
    c = model.config
    print(f"# AR world-model decoding — {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"thread(s), torch {torch.__version__}, {date.today()}, median of {args.runs} runs; model {args.model} "
          f"({model.num_parameters() / 1e6:.2f}M parameters, D={c.width}, {c.depth} layers, "
          f"{c.medusa_heads} Medusa heads); greedy, fp32, batch 1\n", flush=True)

    rows = [long_context_row(model, n, args.runs, args.nocache_tokens) for n in args.contexts]
    print("## long contexts (random codes; one 64-code latent frame generated)\n")
    print("| context tokens | time to first token s | no-cache tok/s | cache tok/s | cache speed-up | "
          f"{DEFAULT} tok/s | {DEFAULT} / cache | codes per forward |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        nan = float("nan")
        print(f"| {r['context_tokens']} | {r['ttft_s']:.3f} | {r['nocache_tok_s']:.2f} | {r['cache_tok_s']:.1f} | "
              f"{r['cache_speedup']:.1f}x | {r.get('medusa_tok_s', nan):.1f} | "
              f"{r.get('medusa_speedup_over_cache', nan):.2f}x | {r.get('medusa_mean_accepted', nan):.2f} |")
    real = None
    if Path(args.heldout).exists():
        clips = heldout_clips(model, args.heldout, args.heldout_codes, args.clips, vt)
        real = real_clip_row(model, clips, args.runs, vt)
        print(f"\n## held-out clips ({real['clips']}: {', '.join(real['worlds'])}): 3 given latent frames -> "
              f"{real['new_tokens_per_clip']} codes = {real['new_frames_per_clip']} frames of 64x64 video\n")
        print("| decoder | tok/s | frames/s |")
        print("|---|---|---|")
        print(f"| cache, greedy | {real['cache_tok_s']:.1f} | {real['cache_fps']:.2f} |")
        print(f"| cache, sampled (T 1.0, top-p 0.8) | {real['sample_tok_s']:.1f} | {real['sample_fps']:.2f} |")
        for name, r in real["trees"].items():
            print(f"| cache + {name}, greedy | {r['tok_s']:.1f} | {r['fps']:.2f} |")
        print("\n| tree | nodes | codes per forward (root included) | forwards | of which plain steps | speed-up over cache |")
        print("|---|---|---|---|---|---|")
        for name, r in real["trees"].items():
            print(f"| {name} | {len(TREES[name][0]) + 1} | {r['mean_accepted']:.2f} | {r['forwards']} | "
                  f"{r['plain']} | {r['speedup_over_cache']:.2f}x |")
        print(f"end to end (DV encode of 9 frames + {DEFAULT} generation (the default tree) + DV decode of 33 "
              f"frames): {real['end_to_end_fps']:.2f} generated frames/s")
        real["codec"] = codec_row(model, clips, args.runs)
        k = real["codec"]
        print(f"entropy coding (kinema.model.ar_codec) of the same clips' {k['codes_per_clip']} codes: compress "
              f"{k['compress_s']:.2f} s, decompress {k['decompress_s']:.2f} s a clip (median), "
              f"{k['bits_per_code']:.2f} bits a code against 15.97 fixed-length, every clip decoded exactly")
    reason = reasoner_rows([p for p in args.reasoner if (Path(p) / "model.safetensors").exists()], args.runs,
                           args.reasoner_tokens)
    print(f"[{time.time() - t_start:.0f} s]")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(
        date=str(date.today()), machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
        torch=torch.__version__, model=str(args.model), parameters=model.num_parameters(), runs=args.runs,
        dtype="fp32", decoding="greedy unless noted", context="random codes (long-context rows)",
        long_context=rows, heldout=real, reasoner=reason), indent=1) + "\n")
    print(f"json: {out}")


if __name__ == "__main__":
    main()
