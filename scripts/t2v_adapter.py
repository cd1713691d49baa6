"""Diffusion-DPO into a text-to-video-only LoRA on the generator (an experiment; protocol in
benchmarks/prereg/t2v-adapter-dpo.md).

Legend: B pairs, r the LoRA's rank.

scripts/t2v_preference.py tunes the whole generator on the critic's pairs, and the given-frame modes, which share
those weights, lose physics alignment. Here the generator is frozen and a LoRA of rank r on each generator
projection (qkv, proj, gate_up, down) learns the same loss; it is patched onto the loaded model and switched on only
while text2video runs, so every other mode and the reasoner are the shipped model exactly.

    python scripts/t2v_adapter.py train --pairs outputs/t2v-dpo/pairs --out outputs/runs/t2v-adapter --steps 400
    python scripts/t2v_adapter.py eval --adapter outputs/runs/t2v-adapter/adapter.safetensors --first 40 --n 20
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kinema.model.mot import LoRA
from kinema.model.pipeline import Pipeline
from kinema.model.sequence import collate
from kinema.model.train import schedule_for
from kinema.train.checkpoint import load_tensors, save_tensors, write_json
from scripts.t2v_preference import MODEL, _errors, _load_pairs, _plan


class Switch:
    on = False  # the adapter acts only while this is set (text2video)


def attach(model, rank: int) -> dict[str, torch.nn.Parameter]:
    """Give every generator expert a LoRA that adds to its projections while Switch.on; -> the new parameters."""
    params = {}
    for i, layer in enumerate(model.backbone.layers):
        gen = layer.gen
        width, hidden = gen.proj.in_features, gen.mlp.down.in_features
        gen.t2v = torch.nn.ModuleDict({"qkv": LoRA(width, 3 * width, rank), "proj": LoRA(width, width, rank),
                                       "gate_up": LoRA(width, 2 * hidden, rank), "down": LoRA(hidden, width, rank)})

        def linear(layer_, name, x, ada, gen=gen):
            return layer_(x) + gen.t2v[name](x) if Switch.on else layer_(x)

        gen._linear = linear
        params.update({f"layers.{i}.t2v.{k}": p for k, p in gen.t2v.named_parameters()})
    return params


def train(a) -> None:
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    model = pipe.model.train()
    model.requires_grad_(False)
    ref = copy.deepcopy(model).eval()  # no adapter: the shipped generator
    params = attach(model, a.rank)
    Switch.on = True
    items = _load_pairs(Path(a.pairs))
    toks = {x["caption"]: _plan(pipe, x["caption"]).tok for x in items}
    schedule = schedule_for(pipe.config)
    opt = torch.optim.AdamW(params.values(), lr=a.lr, weight_decay=0.0)
    print(f"{len(items)} pairs; rank {a.rank}: {sum(p.numel() for p in params.values()) / 1e6:.2f}M parameters; "
          f"beta {a.beta}, lr {a.lr}, {a.steps} steps of {a.batch}")
    log, t0 = [], time.time()
    for step in tqdm(range(a.steps), desc="dpo"):
        pick = [items[j] for j in rng.choice(len(items), a.batch, replace=False)]
        seqs = []
        for which in ("best", "worst"):
            for x in pick:
                tok = toks[x["caption"]]
                v = tok.value.clone()
                v[tok.gen] = x["values"][x[which]]
                seqs.append(replace(tok, value=v))
        batch = collate(seqs)
        B = a.batch
        t = schedule.sample_training_t(B).repeat(2)  # one level and one noise for a pair's two clips
        V = batch.value.shape[-1]
        noise = torch.randn(B, *batch.value.shape[1:]).repeat(2, 1, 1) * (torch.arange(V) < batch.dims[..., None])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            e = _errors(model, schedule, batch, t, noise)
            with torch.no_grad():
                r = _errors(ref, schedule, batch, t, noise)
        d = (e[:B] - r[:B]) - (e[B:] - r[B:])
        loss = -F.logsigmoid(-a.beta * d).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        log.append(dict(step=step, loss=float(loss.detach()), accuracy=float((d < 0).float().mean())))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "adapter.safetensors", {k: p.detach().contiguous() for k, p in params.items()})
    write_json(out / "log.json", dict(settings={k: v for k, v in vars(a).items() if k != "func"},
                                      seconds=round(time.time() - t0, 1), log=log))
    tail = log[-max(1, len(log) // 5):]
    print(f"{time.time() - t0:.0f} s; last fifth: loss {np.mean([x['loss'] for x in tail]):.4f}, pair accuracy "
          f"{np.mean([x['accuracy'] for x in tail]):.3f}; -> {out / 'adapter.safetensors'}")


def evaluate(a) -> None:
    from kinema.model.evaluate import text_to_video

    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    saved = load_tensors(a.adapter)
    rank = saved["layers.0.t2v.qkv.A"].shape[0]
    params = attach(pipe.model, rank)
    for k, p in params.items():
        p.data.copy_(saved[k])
    Switch.on = True  # this process runs text2video only
    r = text_to_video(pipe, a.out, n=a.n, first=a.first, best_of=a.best_of, cache=a.cache, name="t2v_adapter")
    keys = ("model", "model_gap", "model_objects", "model_objects_gap")
    print(json.dumps({k: r[k] for k in keys}, default=float), f"rank {rank}")
    write_json(Path(a.out) / "summary.json", {k: v for k, v in r.items() if k != "rows"} | {"rows": r["rows"]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", default=MODEL)
    t.add_argument("--pairs", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--rank", type=int, default=16)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--beta", type=float, default=500.0)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=train)
    e = sub.add_parser("eval")
    e.add_argument("--model", default=MODEL)
    e.add_argument("--adapter", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--cache", default="outputs/eval/cache")
    e.add_argument("--first", type=int, default=0)
    e.add_argument("--n", type=int, default=40)
    e.add_argument("--best-of", type=int, default=1)
    e.set_defaults(func=evaluate)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
