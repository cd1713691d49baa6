"""Training the autoregressive world model and its Medusa heads with the shared Trainer, and measuring them.

Legend: B batch, L tokens, D width, t latent frames, h/w latent grid.

  train    DV codes of every clip once (--codes, default OUT/codes), action statistics into
           OUT/model_config.json, then next-code CE + z-loss on every code of each clip but the first
           (frame 0 included: the model learns images too, as Cosmos-1's does).
  medusa   from a trained checkpoint (--init): adds K heads, freezes the backbone but its last layer(s) and
           trains those and the heads on the base loss + 0.8^j-weighted head losses (kinema.model.medusa).
  evaluate next-code CE and accuracy on held-out clips, next to the copy-the-previous-frame baseline, and
           Medusa's accepted length; a JSON report.
  ship     the EMA weights of a run in bf16 as a pretrained folder, with a size check.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from kinema.model.ar_config import KIND, ARConfig, get_preset
from kinema.model.autoregressive import ARWorldModel, collate, load_model, sequence
from kinema.train.checkpoint import CheckpointError, load_pretrained, read_json, save_pretrained, write_json
from kinema.train.trainer import unwrap


def ar_loss(model, batch) -> tuple[torch.Tensor, dict]:
    h, _ = model(batch)
    return unwrap(model).lm_objective(h, batch.target)


def prepare(data, codes: Path, out: Path, config: ARConfig, video_tokenizer: str, stride: int = 32,
            progress: bool = True):
    """Codes of the training clips and the model config with action statistics; a resumed run keeps its config."""
    from kinema.model.ar_data import action_statistics, build_codes
    from kinema.tokenize.load import load_tokenizer

    shards = build_codes(data, codes, load_tokenizer(video_tokenizer, "video_tokenizer"), stride=stride,
                         progress=progress)
    saved = out / "model_config.json"
    if saved.exists():
        return shards, ARConfig.from_dict(read_json(saved))
    config = replace(config, video_tokenizer=Path(video_tokenizer).name)
    action_statistics(shards, config)
    write_json(saved, config.to_dict())
    return shards, config


def _train_config(args, out: Path):
    from kinema.train import TrainConfig

    return TrainConfig(out=str(out), steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                       lr=args.lr, warmup=args.warmup, dtype=args.dtype, device=args.device, seed=args.seed,
                       ckpt_every=args.ckpt_every, log_every=args.log_every, ema_decay=args.ema_decay)


def train(args) -> Path:
    from kinema.model.ar_data import CodeClips
    from kinema.train import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shards, config = prepare(args.data, Path(args.codes or out / "codes"), out, get_preset(args.preset),
                             args.video_tokenizer, args.stride)
    dataset = CodeClips(shards, config)
    tc = _train_config(args, out)
    torch.manual_seed(tc.seed)
    model = ARWorldModel(config)
    print(f"{len(dataset)} clips from {len(shards)} datasets; AR world model {args.preset}: "
          f"{model.num_parameters() / 1e6:.2f}M parameters", flush=True)
    trainer = Trainer(model, ar_loss, dataset, tc, config, kind=KIND, collate_fn=collate,
                      find_unused_parameters=True)  # the action layer sleeps through batches without actions
    return trainer.fit()


def medusa_model(init, heads: int) -> ARWorldModel:
    """The checkpoint `init` with `heads` Medusa heads: fresh ones start as copies of the base head."""
    raw, state = load_pretrained(init, expected_kind=KIND)
    config = replace(ARConfig.from_dict(raw["model"]), medusa_heads=heads)
    model = ARWorldModel(config)
    fresh = not any(k.startswith("medusa.") for k in state)
    if fresh:
        state = {**state, **{f"medusa.{k}": v for k, v in model.medusa.state_dict().items()}}
    from kinema.train.checkpoint import load_state_strict

    load_state_strict(model, {k: v.float() for k, v in state.items()}, where=str(init))
    if fresh:
        model.medusa.init_from(model.head.proj)
    return model


def train_medusa(args) -> Path:
    from kinema.model.ar_data import CodeClips
    from kinema.model.medusa import freeze_for_medusa, medusa_objective
    from kinema.train import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tc = _train_config(args, out)
    torch.manual_seed(tc.seed)
    model = medusa_model(args.init, args.heads)
    config = model.config
    shards, _ = prepare(args.data, Path(args.codes or out / "codes"), out, config, args.video_tokenizer, args.stride)
    dataset = CodeClips(shards, config)
    trainable = freeze_for_medusa(model, args.train_layers)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{len(dataset)} clips; Medusa: {args.heads} heads, last {args.train_layers} layer(s) trainable "
          f"({n / 1e6:.2f}M of {model.num_parameters() / 1e6:.2f}M parameters, {len(trainable)} tensors)", flush=True)

    def loss_fn(m, batch):
        h, _ = m(batch)
        return medusa_objective(unwrap(m), h, batch, positions=args.positions)

    trainer = Trainer(model, loss_fn, dataset, tc, config, kind=KIND, collate_fn=collate,
                      find_unused_parameters=True)
    return trainer.fit()


# ------------------------------------------------------------------ measuring


@torch.no_grad()
def evaluate(model: ARWorldModel, dataset, *, clips: int = 64, batch: int = 8, medusa_clips: int = 4,
             context_frames: int = 3) -> dict:
    """Held-out next-code CE / top-1 accuracy on the codes of latent frames >= 1, against copying the code at the
    same place one latent frame earlier; Medusa's accepted length (greedy, checked against plain greedy)."""
    from kinema.model.decoding import SamplingParams
    from kinema.model.medusa import HEAD_TREE, medusa_generate

    model.eval()
    n = min(clips, len(dataset))
    ce_sum, hit, copy_hit, count = 0.0, 0, 0, 0
    for a in range(0, n, batch):
        items = [dataset.codes(i) for i in range(a, min(n, a + batch))]
        tok = collate([dataset[i] for i in range(a, min(n, a + batch))])
        h, _ = model(tok)
        code = ~tok.is_action & tok.valid
        hw = items[0]["indices"][0].numel()
        frame = (code.long().cumsum(1) - 1) // hw  # latent frame of each code (and of the tokens after it)
        nxt_frame = torch.cat([frame[:, 1:], frame[:, :1]], 1)
        sel = (tok.target >= 0) & (nxt_frame >= 1)  # tokens whose next code belongs to a frame >= 1
        logits = model.logits(h[sel]).float()
        t = tok.target[sel]
        ce_sum += float(torch.nn.functional.cross_entropy(logits, t, reduction="sum"))
        hit += int((logits.argmax(-1) == t).sum())
        copy_hit += sum(int((c["indices"][1:] == c["indices"][:-1]).sum()) for c in items)
        count += int(sel.sum())
    out = dict(clips=n, scored_codes=count, ce=ce_sum / count, ppl=float(torch.tensor(ce_sum / count).exp()),
               top1=hit / count, copy_previous_frame_top1=copy_hit / count)
    if model.medusa is not None and medusa_clips:
        acc = []
        for i in range(min(medusa_clips, n)):
            c = dataset.codes(i)
            lat, T = c["indices"][None], c["indices"].shape[0]
            actions = c["actions"][None] if c["actions"] is not None else None
            kw = dict(actions=actions, domain=c["domain"], fps=c["fps"])
            gen_m, stats = medusa_generate(model, lat[:, :context_frames], T, tree=HEAD_TREE, **kw)  # the heads'
            gen_p = model.generate(lat[:, :context_frames], T, params=SamplingParams(temperature=0), **kw)
            if not torch.equal(gen_m, gen_p):
                raise AssertionError(f"held-out clip {i}: Medusa greedy differs from plain greedy decoding")
            acc += stats["accepted"]
        out.update(medusa_mean_accepted=sum(acc) / len(acc), medusa_forwards=len(acc),
                   medusa_clips=min(medusa_clips, n))
    return out


def run_evaluate(args) -> dict:
    from kinema.model.ar_data import CodeClips, build_codes
    from kinema.tokenize.load import load_tokenizer

    torch.set_grad_enabled(False)
    model = load_model(args.model)
    vt = args.video_tokenizer or Path(args.model).parent / model.config.video_tokenizer
    shards = build_codes(args.data, Path(args.codes), load_tokenizer(vt, "video_tokenizer"))
    dataset = CodeClips(shards, model.config)  # actions normalised by the model's own (training) statistics
    # every dataset equally: clips spread over the whole held-out set, not the first datasets only
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[: args.clips].tolist()
    dataset.clips = [dataset.clips[i] for i in order]
    res = evaluate(model, dataset, clips=args.clips, medusa_clips=args.medusa_clips)
    res.update(model=str(args.model), data=list(map(str, args.data)))
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(args.json), res)
    return res


def regression_frame(size: int = 64) -> "np.ndarray":
    """A fixed 64x64 tabletop-like picture (grey floor, a red and a blue block): the regression input."""
    import numpy as np

    img = np.full((1, size, size, 3), 118, np.uint8)
    img[0, :, :, 1] += (np.arange(size) // 8).astype(np.uint8)[None, :]  # a faint floor gradient
    img[0, 20:32, 12:24] = (200, 40, 40)
    img[0, 36:46, 38:50] = (40, 60, 200)
    return img


@torch.no_grad()
def regression_outputs(path) -> dict:
    """What the shipped checkpoint must keep producing: greedy codes of 2 latent frames after the regression
    picture, their teacher-forced CE, and Medusa's agreement with plain greedy decoding."""
    from kinema.model.decoding import SamplingParams
    from kinema.model.medusa import HEAD_TREE, medusa_generate
    from kinema.tokenize.data import to_model
    from kinema.tokenize.load import load_tokenizer

    model = load_model(path)
    vt = load_tokenizer(Path(path).parent / model.config.video_tokenizer, "video_tokenizer")
    ctx, _ = vt.encode(to_model(regression_frame())[None])
    codes = model.generate(ctx, 3, params=SamplingParams(temperature=0))
    tok = collate([sequence(model.config, codes[0])])
    h, _ = model(tok)
    sel = tok.target >= 0
    ce = float(torch.nn.functional.cross_entropy(model.logits(h[sel]).float(), tok.target[sel]))
    out = dict(context=ctx.reshape(-1).tolist(), codes=codes[0, 1:].reshape(-1).tolist(), ce=ce)
    if model.medusa is not None:  # the heads' own tree: their acceptance is what the checkpoint pins
        med, stats = medusa_generate(model, ctx, 3, tree=HEAD_TREE)
        out.update(medusa_equal=bool(torch.equal(med, codes)), medusa_mean_accepted=stats["mean_accepted"])
    return out


def ship(args) -> Path:
    """A run's final (EMA) weights -> bf16 pretrained folder with expected.json (regression_outputs);
    refuses to write more than --max-mb."""
    import shutil

    raw, state = load_pretrained(args.run)
    if raw.get("kind") != KIND:
        raise CheckpointError(f"{args.run} is a {raw.get('kind')!r}, expected {KIND!r}")
    nbytes = sum(v.numel() * (2 if v.is_floating_point() else v.element_size()) for v in state.values())
    if nbytes > args.max_mb * 1e6:
        raise ValueError(f"{args.run}: {nbytes / 1e6:.1f} MB in bf16 exceeds --max-mb {args.max_mb}")
    out = save_pretrained(args.out, state, raw, dtype=torch.bfloat16)
    size = (Path(out) / "model.safetensors").stat().st_size
    if size > args.max_mb * 1e6:
        shutil.rmtree(out)
        raise ValueError(f"{out}: {size / 1e6:.1f} MB exceeds --max-mb {args.max_mb}; removed")
    expected = regression_outputs(out)  # from the bf16 weights, as they ship
    tmp = Path(out) / ".tmp-expected.json"
    tmp.write_text(json.dumps(expected) + "\n")
    tmp.replace(Path(out) / "expected.json")
    print(f"shipped {args.run} -> {out} ({size / 1e6:.2f} MB); regression CE {expected['ce']:.3f}")
    return out
