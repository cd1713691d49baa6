"""Text-to-video preference tuning: Diffusion-DPO on the reasoner critic's choices (an experiment).

Legend: B pairs, L tokens, V values per token, D draws per prompt.

`pairs` draws D text-to-video clips for each training caption of the passive worlds (the captions of the
episodes `kinema worlds generate --seed 0` makes, which the generator trained on; never the held-out ones) and
scores each by log P(caption | clip) under the checkpoint's own reasoner (the first critic of `kinema generate
--best_of`; kinema.model.critic now sets it against recoloured captions). `train` then tunes the generator (the
reasoner stays fixed) with the Diffusion-DPO loss (Wallace et al. 2023): at one noise level and one noise for both,
the tuned model's denoising error on the critic's best draw, minus the frozen starting model's, should fall below
the same difference on its worst draw,

    loss = -log sigmoid(-beta * ((e(w) - e_ref(w)) - (e(l) - e_ref(l)))),

e the rectified-flow loss over the clip's vision values. Nothing of the evaluation enters: the preference is the
critic's. The tuned model is written as a checkpoint folder beside the tokenizers, for `kinema eval text2video`.

    python scripts/t2v_preference.py pairs --out outputs/t2v-dpo/pairs --episodes 60 --draws 4
    python scripts/t2v_preference.py train --pairs outputs/t2v-dpo/pairs --out outputs/runs/t2v-dpo --steps 200

`train --adapter-rank R` leaves the generator frozen and trains a LoRA of rank R on its projections that acts only in
text2video (patched onto the loaded model; every other mode and the reasoner stay the shipped model exactly);
`eval-adapter` runs the text-to-video evaluation with it attached.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from kinema.model.critic import SEED_STRIDE
from kinema.model.mot import LoRA
from kinema.model.evaluate import SCENARIOS
from kinema.model.pipeline import Pipeline
from kinema.model.reasoner import Reasoner, ReasonerJudge
from kinema.model.sequence import VISION, collate
from kinema.model.train import noised, schedule_for, world_model_loss
from kinema.train.checkpoint import load_tensors, save_pretrained, save_tensors, write_json

MODEL = "checkpoints/world-model-small"
TRAIN_SEED = 0  # `kinema worlds generate --seed 0`: the training episodes' seeds
STEPS, GUIDANCE = 20, 3.0  # the evaluation's sampler settings


def _plan(pipe, caption: str):
    return pipe._plan("text2video", num_frames=33, prompt=caption, guidance=GUIDANCE, num_steps=STEPS)


def pairs(a) -> None:
    from kinema.eval.simulator import simulate
    from kinema.worlds.generate import episode_seed

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    judge = ReasonerJudge(Reasoner(pipe))
    jobs = [(s, i) for s in SCENARIOS for i in range(a.episodes)]
    for scenario, i in tqdm(jobs, desc="pairs"):
        path = out / f"{scenario}-{i:04d}"
        if path.with_suffix(".json").exists():  # resumable: a prompt's JSON is written last, atomically
            continue
        caption = simulate(scenario, episode_seed(TRAIN_SEED, i), render=False).caption
        p = _plan(pipe, caption)
        values, scores = [], []
        for k in range(a.draws):
            v = pipe._denoise(p.tok, p.guides, num_steps=p.num_steps, shift=p.shift, sampler=p.sampler,
                              seed=i + k * SEED_STRIDE, progress=False)
            frames = pipe._unpack("text2video", p.tok, v, p.vision, p.k, p.T, p.streams, p.fps)["frames"]
            scores.append(judge.caption(frames, p.fps, [caption])[0])
            values.append(v[p.tok.gen])  # [Lg, V]: the generated rows
        save_tensors(path.with_suffix(".safetensors"), {"values": torch.stack(values)})
        write_json(path.with_suffix(".json"), dict(caption=caption, scenario=scenario, scores=scores))


def _load_pairs(folder: Path) -> list[dict]:
    items = []
    for f in sorted(folder.glob("*.json")):
        meta = json.loads(f.read_text())
        s = np.array(meta["scores"])
        items.append(dict(caption=meta["caption"], values=load_tensors(f.with_suffix(".safetensors"))["values"],
                          best=int(s.argmax()), worst=int(s.argmin()), margin=float(s.max() - s.min())))
    return items


def _errors(model, schedule, batch, t, noise) -> torch.Tensor:
    """Each sample's rectified-flow loss over its generated vision values -> [B]."""
    tok, level = noised(schedule, batch, t, noise)
    out = model(tok, level)
    per = schedule.loss(out.float(), batch.value, noise, t.view(-1, 1, 1))  # [B, L, V]
    V = batch.value.shape[-1]
    m = ((torch.arange(V) < batch.dims[..., None]) & (batch.gen & (batch.kind == VISION))[..., None]).float()
    return (per * m).sum((1, 2)) / m.sum((1, 2))


class Switch:
    on = False  # a text2video adapter (attach) acts only while this is set


def attach(model, rank: int) -> dict[str, torch.nn.Parameter]:
    """Give every generator expert a LoRA of rank `rank` on its projections (qkv, proj, gate_up, down) that adds
    only while Switch.on, i.e. only in text2video; -> the new parameters by name."""
    params = {}
    for i, layer in enumerate(model.backbone.layers):
        gen = layer.gen
        width, hidden = gen.proj.in_features, gen.mlp.down.in_features
        gen.t2v = torch.nn.ModuleDict({"qkv": LoRA(width, 3 * width, rank), "proj": LoRA(width, width, rank),
                                       "gate_up": LoRA(width, 2 * hidden, rank), "down": LoRA(hidden, width, rank)})

        def linear(layer_, name, x, ada, gen=gen):
            return layer_(x) + gen.t2v[name](x) if Switch.on else layer_(x)

        gen._linear = linear  # the expert's projections all go through _linear
        params.update({f"layers.{i}.t2v.{k}": p for k, p in gen.t2v.named_parameters()})
    return params


def train(a) -> None:
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    model = pipe.model.train()
    for _, p in model.reasoner_parameters():
        p.requires_grad_(False)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    adapter = {}
    if a.adapter_rank:  # the generator stays still; only a text2video LoRA learns
        model.requires_grad_(False)
        adapter = attach(model, a.adapter_rank)
        Switch.on = True
        print(f"text2video adapter, rank {a.adapter_rank}: {sum(p.numel() for p in adapter.values()) / 1e6:.2f}M "
              "parameters")
    items = [x for x in _load_pairs(Path(a.pairs)) if x["margin"] >= a.min_margin]
    toks = {x["caption"]: _plan(pipe, x["caption"]).tok for x in items}
    schedule = schedule_for(pipe.config)
    anchor = None
    if a.anchor:  # real clips of the generator's own mixture, their ordinary loss beside the pairs
        from kinema.model.data import ClipTasks

        anchor = ClipTasks(sorted(Path(a.anchor).glob("*.safetensors")), pipe.config, pipe.text)
        print(f"anchor: {len(anchor)} clips, {a.anchor_batch} a step, weight {a.anchor_weight}")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0)
    print(f"{len(items)} pairs (critic margin >= {a.min_margin}); beta {a.beta}, lr {a.lr}, "
          f"{a.steps} steps of {a.batch}")
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
        held = torch.zeros(())
        if anchor is not None:
            real = collate([anchor[int(j)] for j in rng.integers(len(anchor), size=a.anchor_batch)])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                held, _ = world_model_loss(model, real, schedule)
            loss = loss + a.anchor_weight * held
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        log.append(dict(step=step, loss=float(loss.detach()), anchor=float(held.detach()),
                        accuracy=float((d < 0).float().mean()),
                        margin=float(-d.mean()), e_best=float(e[:B].mean()), e_worst=float(e[B:].mean())))
    out = Path(a.out)
    if adapter:
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "adapter.safetensors", {k: p.detach().contiguous() for k, p in adapter.items()})
        write_json(out / "log.json", dict(settings={k: v for k, v in vars(a).items() if k != "func"},
                                          seconds=round(time.time() - t0, 1), log=log))
        print(f"{time.time() - t0:.0f} s; -> {out / 'adapter.safetensors'}")
        return
    raw = json.loads((Path(a.model) / "config.json").read_text())
    final = out / "final"
    save_pretrained(final, {k: v.detach() for k, v in model.state_dict().items()}, raw, dtype=torch.bfloat16)
    shutil.copy(Path(a.model) / "tokenizer.json", final / "tokenizer.json")
    for name in (pipe.config.video_tokenizer, pipe.config.audio_tokenizer):  # tokenizers beside the model
        link = out / name
        if not link.exists():
            os.symlink(Path(a.model).resolve().parent / name, link)
    settings = {k: v for k, v in vars(a).items() if k != "func"}
    write_json(out / "log.json", dict(settings=settings, seconds=round(time.time() - t0, 1), log=log))
    tail = log[-max(1, len(log) // 5):]
    print(f"{time.time() - t0:.0f} s; last fifth: loss {np.mean([x['loss'] for x in tail]):.4f}, pair accuracy "
          f"{np.mean([x['accuracy'] for x in tail]):.3f}; -> {final}")


def eval_adapter(a) -> None:
    """`kinema eval text2video` with a trained text2video adapter attached (this process runs text2video only)."""
    from kinema.model.evaluate import text_to_video

    pipe = Pipeline.from_pretrained(a.model, device="cpu")
    saved = load_tensors(a.adapter)
    for k, p in attach(pipe.model, saved["layers.0.t2v.qkv.A"].shape[0]).items():
        p.data.copy_(saved[k])
    Switch.on = True
    r = text_to_video(pipe, a.out, n=a.n, first=a.first, best_of=a.best_of, cache=a.cache, name="t2v_adapter")
    print(json.dumps({k: r[k] for k in ("model", "model_gap", "model_objects", "model_objects_gap")}))
    write_json(Path(a.out) / "summary.json", r)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("pairs")
    q.add_argument("--model", default=MODEL)
    q.add_argument("--out", required=True)
    q.add_argument("--episodes", type=int, default=60, help="training captions per passive world")
    q.add_argument("--draws", type=int, default=4)
    q.set_defaults(func=pairs)
    t = sub.add_parser("train")
    t.add_argument("--model", default=MODEL)
    t.add_argument("--pairs", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--steps", type=int, default=200)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=1e-6)
    t.add_argument("--beta", type=float, default=500.0)
    t.add_argument("--min-margin", type=float, default=0.0,
                   help="only prompts whose best and worst scores differ this much")
    t.add_argument("--anchor", default=None, help="a folder of the generator's training latent shards: their "
                   "ordinary loss is added each step, to hold the other modes")
    t.add_argument("--anchor-weight", type=float, default=1.0)
    t.add_argument("--anchor-batch", type=int, default=8)
    t.add_argument("--adapter-rank", type=int, default=0, help="> 0: train only a text2video LoRA of this rank "
                   "on the generator (written as OUT/adapter.safetensors), the generator itself frozen")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=train)
    e = sub.add_parser("eval-adapter")
    e.add_argument("--model", default=MODEL)
    e.add_argument("--adapter", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--cache", default="outputs/eval/cache")
    e.add_argument("--first", type=int, default=0)
    e.add_argument("--n", type=int, default=40)
    e.add_argument("--best-of", type=int, default=1)
    e.set_defaults(func=eval_adapter)
    a = p.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
