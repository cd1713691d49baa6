"""Training the world model: latents once, then the shared Trainer on a mixture of tasks.

Legend: B batch, L tokens, V value width.

The objective (DESIGN "Objectives"): every noisy token gets the schedule's
loss (rectified flow: velocity; EDM: preconditioned denoising), averaged per
modality over its real entries, then summed with weights (vision 1, action 1,
sound 0.5); reasoner samples add next-token cross-entropy (+ z-loss) on their
answer tokens with weight 1 (BAGEL's 1:1). A batch shares one noise level per sample, drawn by the schedule
with the resolution-dependent shift.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path

import torch

from kinema.diffusion.schedules import get_schedule, resolution_shift
from kinema.model.lm_loss import keep_loss, lm_loss
from kinema.model import embodiments as emb
from kinema.model.config import KIND, WorldModelConfig, get_preset
from kinema.model.sequence import ACTION, AUDIO, VISION, Tokens, collate
from kinema.model.world_model import WorldModel
from kinema.train.checkpoint import CheckpointError, mean_state, read_json, write_json
from kinema.train.config import add_train_flags

LOSS_WEIGHTS = {VISION: ("vision", 1.0), ACTION: ("action", 1.0), AUDIO: ("audio", 0.5)}
TEXT_WEIGHT = 1.0
NEW_PARTS = {"text_out.": "the reasoner's text head", "frame_in.": "the given-frame input (frame_condition)",
             "moved_in.": "the actions-since-the-given-frame input (frame_condition)",
             "pixel_in.": "the reasoner's pixel input (pixel_cell)", ".lora.": "the reasoner's adapter (reason_adapter)",
             ".gen.inverse.": "the generator's inverse-dynamics adapter (inverse_adapter)",
             ".und.inverse.": "the reasoner's inverse-dynamics adapter (inverse_context)"}


def schedule_for(config: WorldModelConfig, shift: float | None = None, size: int = 64):
    """The config's schedule; rectified flow shifted for the tokens per latent frame of size x size video
    (64x64: 16 tokens, base_shift; 128x128: 64 tokens, twice it)."""
    if config.schedule == "edm":
        return get_schedule("edm")
    grid = size // config.spatial_compression
    tokens = max(1, grid // config.patch[0]) * max(1, grid // config.patch[1])
    return get_schedule("rectified_flow", shift=shift or resolution_shift(config.base_shift, tokens))


def noised(schedule, batch: Tokens, t: torch.Tensor, noise: torch.Tensor) -> tuple[Tokens, torch.Tensor]:
    """Replace the values of noisy tokens by the network input at time t [B]; -> (tokens, level [B, L])."""
    B, L = batch.kind.shape
    tt = t.view(B, 1, 1)
    xt = schedule.add_noise(batch.value, noise, tt)
    value = torch.where(batch.gen[..., None], schedule.model_input(xt, tt), batch.value)
    level = schedule.noise_level(t).view(B, 1).expand(B, L)
    return replace(batch, value=value), level


def world_model_loss(model, batch: Tokens, schedule, teacher=None, keep: float = 0.0,
                     high_noise: float = 0.0, teacher_shared: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """teacher: a frozen copy of the starting weights; with keep > 0 its answers are kept where it was right, at
    the answer tokens marked batch.hold (lm_loss.keep_loss), weighted by keep; teacher_shared: it answers through
    the shared question adapter (a world's own adapter keeps the shared one's answers). high_noise (rectified flow): the share of samples whose time is drawn
    uniformly from [0.9, 1] instead, where a one-step estimate from pure noise is made."""
    B, L, V = batch.value.shape
    t = schedule.sample_training_t(B, device=batch.value.device)
    if high_noise:
        top = torch.rand(B, device=t.device) < high_noise
        t = torch.where(top, 0.9 + 0.1 * torch.rand(B, device=t.device), t)
    real = torch.arange(V, device=batch.value.device) < batch.dims[..., None]
    noise = torch.randn_like(batch.value) * real  # padding entries stay exactly 0, as at sampling
    tok, level = noised(schedule, batch, t, noise)
    scored = batch.target >= 0
    uncertain = getattr(getattr(model, "module", model), "loss_logvar", None) is not None  # DDP/FSDP wrap the model
    outs = model(tok, level, **({"text_at": scored} if scored.any() else {}), **({"logvar": True} if uncertain else {}))
    outs = outs if isinstance(outs, tuple) else (outs,)
    out, logits = outs[0], (outs[1] if scored.any() else None)
    per = schedule.loss(out.float(), batch.value, noise, t.view(B, 1, 1))  # [B, L, V]
    total, metrics = per.new_zeros(()), {}
    if uncertain:  # EDM's learned uncertainty: each sample's loss * exp(-u) + u, u its noise level's log-variance
        u = outs[-1].float()
        metrics["loss/logvar"] = float(u.detach().mean())
    for kind, (name, w) in LOSS_WEIGHTS.items():
        m = real & (batch.gen & (batch.kind == kind))[..., None]
        n = m.sum()
        if n:
            loss_k = (per * m).sum() / n
            metrics[f"loss/{name}"] = float(loss_k.detach())  # unweighted, comparable across runs
            if uncertain:
                per_sample, share = (per * m).sum((1, 2)), m.sum((1, 2)) / n  # [B]
                loss_k = (per_sample * (-u).exp()).sum() / n + (u * share).sum()
            total = total + w * loss_k
    if logits is not None:
        ce, parts = lm_loss(logits, batch.target[scored])
        total = total + TEXT_WEIGHT * ce
        metrics["loss/text"] = parts["ce"]
        if teacher is not None and keep > 0:
            with torch.no_grad():
                asked = replace(tok, world=torch.zeros_like(tok.world)) if teacher_shared else tok
                teacher_logits = teacher(asked, level, text_at=scored)[1]
            kept, kparts = keep_loss(logits, teacher_logits, batch.target[scored], batch.hold[scored])
            total = total + keep * kept
            metrics.update({"loss/keep": kparts["keep"], "keep/held": kparts["kept"]})
    return total, metrics


def prepare(data, out: Path, config: WorldModelConfig, video_tokenizer: str, audio_tokenizer: str,
            stride: int = 32, progress: bool = True, fill=()):
    """Latents, text tokenizer and data statistics for a run folder; reused when the run resumes.
    fill: embodiments registered on a starting checkpoint, whose action statistics come from this data."""
    from kinema.model.data import action_statistics, build_latents, statistics
    from kinema.tokenize.load import load_tokenizer
    from kinema.tokenize.text import TextTokenizer, corpus_from_datasets

    shards = build_latents(data, out / "latents", load_tokenizer(video_tokenizer, "video_tokenizer"),
                           load_tokenizer(audio_tokenizer, "audio_tokenizer"), stride=stride, progress=progress)
    text_path = out / "text"
    if not (text_path / TextTokenizer.FILENAME).exists():
        from kinema.model.data import latent_folder

        datasets = [d for d in data if latent_folder(d) is None]
        if not datasets:  # shards keep clips, not the text the tokenizer learns from
            raise ValueError(f"--data {' '.join(map(str, data))}: folders of latent shards only; the text tokenizer "
                             "is trained on datasets' text: give --init CKPT (its tokenizer is used) or a dataset too")
        TextTokenizer.train(corpus_from_datasets(datasets), vocab_size=config.vocab_size).save(text_path)
    text = TextTokenizer.load(text_path)
    saved = out / "model_config.json"
    if saved.exists():  # a resumed run keeps its statistics and registry exactly
        config = WorldModelConfig.from_dict(read_json(saved))
        # but embodiments registered on a starting checkpoint (--init --embodiment) get theirs from this data
        unfitted = [e.name for e in config.embodiments if e.name in fill and not e.fitted]
        if unfitted:
            action_statistics(shards, config, only=unfitted)
    else:
        config = replace(config, vocab_size=text.vocab_size, video_tokenizer=Path(video_tokenizer).name,
                         audio_tokenizer=Path(audio_tokenizer).name)
        statistics(shards, config)
    missing = [e.name for e in config.embodiments if e.name in fill and not e.fitted]
    if missing:
        raise ValueError(f"--embodiment {', '.join(missing)}: no episode in --data has their actions (matched by "
                         "action names, else by width)")
    write_json(saved, config.to_dict())
    return shards, text, config


def parse_embodiment(spec: str) -> tuple[str, int, str]:
    """--embodiment NAME:DIM[:after|at] -> (name, dim, timing)."""
    parts = spec.split(":")
    try:
        if not 2 <= len(parts) <= 3 or not parts[0]:
            raise ValueError
        name, dim, timing = parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "after"
    except ValueError:
        raise ValueError(f"--embodiment {spec!r}: expected NAME:DIM[:after|at], e.g. my_arm:7") from None
    if timing not in emb.TIMINGS:
        raise ValueError(f"--embodiment {spec!r}: timing must be one of {emb.TIMINGS}, got {timing!r}")
    return name, dim, timing


def dataset_size(dataset, config: WorldModelConfig) -> int:
    """The pixel size of a training mixture's generator clips (64 when it holds none: questions only)."""
    from kinema.model.data import ClipTasks

    clips = getattr(dataset, "generator", dataset)  # reason_data.draws wraps the generator's ClipTasks
    return int(clips.vision.shape[-1]) * config.spatial_compression if isinstance(clips, ClipTasks) else 64


def train(args) -> Path:
    from kinema.model.data import ClipTasks
    from kinema.train import TrainConfig, Trainer

    task_weights = parse_weights(getattr(args, "reason_task_weights", None))  # bad flags fail before any compute
    mode_weights = parse_weights(getattr(args, "mode_weights", None), flag="--mode-weights", what="MODE")
    if getattr(args, "freeze_reasoner", False) and (not args.init or args.reason_weight > 0):
        raise ValueError("--freeze-reasoner trains the generator of an existing checkpoint: give --init and "
                         f"--reason-weight 0 (got init={args.init!r}, reason weight {args.reason_weight})")
    adapter = getattr(args, "reason_adapter", 0)
    if adapter and (not args.init or args.reason_weight != 1):
        raise ValueError("--reason-adapter trains only the reasoner's adapter of an existing checkpoint (the generator "
                         f"stays still): give --init and --reason-weight 1 (got init={args.init!r}, reason weight "
                         f"{args.reason_weight})")
    high_noise = getattr(args, "high_noise_share", 0.0)
    if not 0 <= high_noise <= 1 or (high_noise and args.schedule != "rectified_flow"):
        raise ValueError(f"--high-noise-share {high_noise}: expected a share in [0, 1], with the rectified_flow schedule "
                         f"(got {args.schedule})")
    inverse = getattr(args, "inverse_adapter", 0)
    if inverse:
        if not args.init or args.reason_weight != 0 or adapter:
            raise ValueError("--inverse-adapter trains only the inverse-dynamics adapter of an existing checkpoint: give "
                             f"--init and --reason-weight 0, without --reason-adapter (got init={args.init!r}, reason "
                             f"weight {args.reason_weight}, reason adapter {adapter})")
        if mode_weights is not None or args.mixture != "actions":
            raise ValueError("--inverse-adapter draws inverse dynamics alone from the worlds with actions: give "
                             f"--mixture actions and no --mode-weights (got {args.mixture!r}, {mode_weights})")
        mode_weights = {"forward_dynamics": 0.0, "policy": 0.0}
    context = getattr(args, "inverse_context", 0)
    if context and not inverse:
        raise ValueError(f"--inverse-context {context}: the reasoner's inverse-dynamics adapter trains with the "
                         "generator's: give --inverse-adapter too")
    own = getattr(args, "inverse_own", None)
    if own and not inverse:
        raise ValueError(f"--inverse-own {own}: an embodiment's own inverse-dynamics adapters start as the shared "
                         "ones and train as they do: give --inverse-adapter too")
    reason_own = getattr(args, "reason_own", None)
    if reason_own and (not args.init or args.reason_weight != 1 or adapter or args.data):
        raise ValueError(f"--reason-own {reason_own}: a world's own reasoner adapter trains on questions alone from a "
                         "checkpoint with a shared one: give --init, --reason-weight 1 and --reason-data, without "
                         f"--reason-adapter or --data (got init={args.init!r}, reason weight {args.reason_weight}, "
                         f"reason adapter {adapter}, data {args.data})")
    first = getattr(args, "reason_adapter_layers", None)
    keep = getattr(args, "reason_keep", 0.0)
    if keep and (not args.init or not keep > 0):
        raise ValueError(f"--reason-keep {keep}: give a weight > 0 and --init (the teacher is the starting checkpoint)")
    hold_tasks = getattr(args, "reason_keep_tasks", None)
    hold_tasks = tuple(t for t in hold_tasks.split(",") if t) if hold_tasks is not None else None
    if hold_tasks is not None and not keep:
        raise ValueError(f"--reason-keep-tasks {','.join(hold_tasks)}: the tasks kept need a teacher: give --reason-keep")
    if hold_tasks is not None:
        from kinema.model.reason_data import TASK_OF
        if not hold_tasks or not set(hold_tasks) <= set(TASK_OF.values()):
            raise ValueError(f"--reason-keep-tasks {','.join(hold_tasks)}: expected tasks among "
                             f"{sorted(set(TASK_OF.values()))}")
    if getattr(args, "reason_question_data", None) and not getattr(args, "reason_question", None):
        raise ValueError("--reason-question-data gives clips for one question only: name it with --reason-question")
    if first is not None and (not adapter or first < 1):
        raise ValueError(f"--reason-adapter-layers {first}: give a number of layers >= 1, with --reason-adapter")
    if not args.data and not (args.init and args.reason_weight == 1 and args.reason_data):
        raise ValueError("--data may be left out only when training on questions alone from a checkpoint: give --init, "
                         f"--reason-weight 1 and --reason-data (got init={args.init!r}, reason weight "
                         f"{args.reason_weight}, reason data {args.reason_data})")
    out = Path(args.out)
    pixels = getattr(args, "reason_pixels", 0)
    config = get_preset(args.preset, schedule=args.schedule, reason_audio=getattr(args, "reason_audio", False),
                        pixel_cell=pixels, reason_adapter=adapter, loss_uncertainty=args.schedule == "edm")
    new_embodiments = [parse_embodiment(e) for e in getattr(args, "embodiment", [])]
    for name, dim, timing in new_embodiments:
        emb.register_embodiment(config.embodiments, name, dim, timing=timing, max_action_dim=config.max_action_dim,
                                max_embodiments=config.max_embodiments)
    init_state = None
    if args.init:  # post-training: the initial checkpoint's config (statistics, vocabulary) and text tokenizer
        from kinema.train.checkpoint import load_pretrained

        raw, init_state = load_pretrained(args.init, expected_kind=KIND)
        init_embodiments = [emb.Embodiment(**e) for e in raw["model"]["embodiments"]]
        for name, dim, timing in new_embodiments:  # its slots stay: a new robot takes the next free one
            emb.register_embodiment(init_embodiments, name, dim, timing=timing,
                                    max_action_dim=raw["model"]["max_action_dim"],
                                    max_embodiments=raw["model"]["max_embodiments"])
        if reason_own and not raw["model"].get("reason_adapter"):
            raise ValueError(f"--reason-own {reason_own}: {args.init} has no reasoner adapter to start the world's "
                             "own from (its reason_adapter is 0)")
        if own and own not in [e.name for e in init_embodiments]:
            raise ValueError(f"--inverse-own {own!r}: not an embodiment of {args.init} (registered: "
                             f"{[e.name for e in init_embodiments]})")
        if adapter and raw["model"].get("pixel_cell") and not raw["model"].get("reason_adapter"):
            raise ValueError(f"--reason-adapter: {args.init}'s pixel view is read by its generator too (pixel_cell "
                             f"{raw['model']['pixel_cell']} without an adapter); with an adapter only questions read "
                             "it, so its generator would change. Start from a checkpoint without the pixel view and "
                             "add it with --reason-pixels")
        if adapter and adapter < raw["model"].get("reason_adapter", 0):
            raise ValueError(f"--reason-adapter {adapter}: {args.init}'s adapter has rank "
                             f"{raw['model']['reason_adapter']}; give at least that (a smaller rank would drop what "
                             "its adapter learned)")
    out.mkdir(parents=True, exist_ok=True)  # after every check, so a refused run leaves nothing behind

    def setup(show: bool):
        """The run folder: model config, text tokenizer, latents (and the reasoner's); reused when present."""
        if args.init and not (out / "model_config.json").exists():
            model_cfg = dict(raw["model"])
            if getattr(args, "frame_condition", False):  # add (or widen to) the preset's given-frame inputs
                model_cfg.update(frame_condition=True, cond_rows=config.cond_rows)
            if getattr(args, "reason_audio", False):
                model_cfg.update(reason_audio=True)
            if pixels:
                model_cfg.update(pixel_cell=pixels)
            if adapter:
                model_cfg.update(reason_adapter=adapter)
            if inverse:
                model_cfg.update(inverse_adapter=inverse, inverse_context=context or model_cfg.get("inverse_context", 0))
            if reason_own and reason_own not in model_cfg.get("reason_own", ()):
                model_cfg.update(reason_own=[*model_cfg.get("reason_own", ()), reason_own])
                if getattr(args, "reason_own_rank", 0):
                    model_cfg.update(reason_own_rank=args.reason_own_rank)
            if own and own not in model_cfg.get("inverse_own", ()):
                model_cfg.update(inverse_own=[*model_cfg.get("inverse_own", ()), own])
            if new_embodiments:  # registered without statistics: prepare fills them from the data
                model_cfg.update(embodiments=[asdict(e) for e in init_embodiments])
            write_json(out / "model_config.json", model_cfg)
            shutil.copytree(Path(args.init), out / "text", dirs_exist_ok=True,
                            ignore=lambda d, names: [n for n in names if n != "tokenizer.json"])
        if args.data:
            shards, text, cfg = prepare(args.data, out, config, args.video_tokenizer, args.audio_tokenizer,
                                        args.stride, progress=show, fill=[e[0] for e in new_embodiments])
        else:  # questions only: the checkpoint's config and text tokenizer, copied in above
            from kinema.tokenize.text import TextTokenizer

            shards, text = [], TextTokenizer.load(out / "text")
            cfg = WorldModelConfig.from_dict(read_json(out / "model_config.json"))
        reason = None
        if args.reason_weight > 0:  # the reasoner's questions, on every training dataset plus the twin datasets
            from kinema.model.reason_data import build_reason_latents
            from kinema.tokenize.load import load_tokenizer

            tokenizers = (load_tokenizer(args.video_tokenizer, "video_tokenizer"),
                          load_tokenizer(args.audio_tokenizer, "audio_tokenizer") if cfg.reason_audio else None)
            reason = build_reason_latents([*args.data, *(args.reason_data or [])], out / "reason_latents",
                                          *tokenizers, progress=show)
            drill = build_reason_latents(args.reason_question_data, out / "reason_latents_question", *tokenizers,
                                         progress=show) if getattr(args, "reason_question_data", None) else []
            reason = (reason, drill)
        return shards, text, cfg, reason

    from kinema.train.distributed import barrier, cleanup_distributed, init_distributed

    rank = init_distributed(args.device)[0]
    for turn in (0, 1):  # under torchrun rank 0 prepares the run folder first; the others then only read it
        if (rank == 0) == (turn == 0):
            shards, text, config, reason_shards = setup(show=rank == 0)
        barrier()
    dataset = None
    if shards:
        dataset = ClipTasks(shards, config, text, cond_dropout=args.cond_dropout, mixture=args.mixture,
                            mode_weights=mode_weights)
        print(f"{len(dataset)} clips from {len(shards)} datasets; text vocabulary {text.vocab_size}")
    if reason_shards is not None:
        from kinema.model.reason_data import ReasonTasks, draws

        reason = ReasonTasks(reason_shards[0], config, text, task_weights=task_weights,
                             question=getattr(args, "reason_question", None),
                             question_share=getattr(args, "reason_question_share", None), question_shards=reason_shards[1],
                             worlds=(reason_own,) if reason_own else None, hold_tasks=hold_tasks)
        print(f"{len(reason)} reasoner questions on {len(reason.clips)} clips; p(question) = {args.reason_weight}")
        dataset = draws(dataset, reason, args.reason_weight)
    tc = TrainConfig(out=str(out), steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
                     lr=args.lr, warmup=args.warmup, dtype=args.dtype, device=args.device, seed=args.seed,
                     ckpt_every=args.ckpt_every, log_every=args.log_every, ema_decay=args.ema_decay,
                     sharding=args.sharding, num_workers=args.workers)
    torch.manual_seed(tc.seed)
    model = WorldModel(config)
    if args.init:
        from kinema.train.checkpoint import load_state_strict

        state = {k: v.float() for k, v in init_state.items()}
        if own:  # an embodiment's own adapters start as the shared ones: its inverse dynamics starts where it was
            site = config.inverse_sites[1 + config.inverse_own.index(own)]
            copied = {k.replace(".inverse.", f".{site}."): v.clone() for k, v in state.items() if ".inverse." in k}
            if any(k not in state for k in copied):
                print(f"init: {own}'s own inverse-dynamics adapters ({site}) start as the shared ones")
                state.update({k: v for k, v in copied.items() if k not in state})
        if reason_own:  # a world's own update starts at zero (B = 0): its answers start where the shared one's are
            fresh = {k: v for k, v in model.state_dict().items() if f".lora_{reason_own}." in k and k not in state}
            if fresh:
                print(f"init: {reason_own}'s own reasoner adapter (lora_{reason_own}, rank "
                      f"{config.reason_own_rank or config.reason_adapter}) starts with no effect: the shared one's answers")
                state.update({k: v.detach().clone() for k, v in fresh.items()})
        for part, what in NEW_PARTS.items():  # parts an older checkpoint lacks start as a fresh model's
            fresh = {k: v for k, v in model.state_dict().items() if part in k and k not in state}
            if fresh:
                print(f"init: {what} is not in the checkpoint; it starts from its fresh initialisation")
                state.update({k: v.detach().clone() for k, v in fresh.items()})
        w, want = state.get("moved_in.weight"), model.moved_in.weight if model.moved_in is not None else None
        if w is not None and want is not None and w.shape[1] < want.shape[1]:  # more cond rows: new inputs read 0
            print(f"init: the action input widens from {w.shape[1]} to {want.shape[1]} numbers; the new ones start at zero")
            state["moved_in.weight"] = torch.cat([w, w.new_zeros(w.shape[0], want.shape[1] - w.shape[1], w.shape[2])], 1)
        widen_adapter(state, model.state_dict())
        load_state_strict(model, state, where=str(args.init))
    if getattr(args, "freeze_reasoner", False):
        frozen = [p.requires_grad_(False).numel() for _, p in model.reasoner_parameters()]
        print(f"--freeze-reasoner: {sum(frozen) / 1e6:.2f}M reasoner parameters frozen")
    if adapter:
        trainable = dict(model.adapter_parameters(first_layers=first))
        frozen = [p.requires_grad_(False).numel() for name, p in model.named_parameters() if name not in trainable]
        what = (f"the adapter of the first {first} layers" if first is not None else
                f"adapter, {'pixel view, ' if config.pixel_cell else ''}final reasoner norm, text head")
        print(f"--reason-adapter {adapter}: {sum(p.numel() for p in trainable.values()) / 1e6:.2f}M parameters train "
              f"({what}); {sum(frozen) / 1e6:.2f}M stay still")
    if reason_own:
        trainable = dict(model.reason_own_parameters((reason_own,)))
        frozen = [p.requires_grad_(False).numel() for name, p in model.named_parameters() if name not in trainable]
        print(f"--reason-own {reason_own}: {sum(p.numel() for p in trainable.values()) / 1e6:.2f}M parameters train "
              f"(its own adapter); {sum(frozen) / 1e6:.2f}M stay still")
    if inverse:
        sites = (config.inverse_sites[1 + config.inverse_own.index(own)],) if own else None
        trainable = dict(model.inverse_parameters(sites))
        frozen = [p.requires_grad_(False).numel() for name, p in model.named_parameters() if name not in trainable]
        print(f"--inverse-adapter {inverse}{f' --inverse-own {own}' if own else ''}: "
              f"{sum(p.numel() for p in trainable.values()) / 1e6:.2f}M parameters train; "
              f"{sum(frozen) / 1e6:.2f}M stay still")
    print(f"world model {args.preset}: {model.num_parameters() / 1e6:.2f}M parameters")
    teacher = None
    if keep:  # the starting weights, frozen: the fine-tune keeps what they answer right (lm_loss.keep_loss)
        import copy

        teacher = copy.deepcopy(model).eval().requires_grad_(False)
        print(f"--reason-keep {keep}: answers {'the shared adapter' if reason_own else 'the starting weights'} get "
              f"right are kept (KL to them, weight {keep}; tasks: {', '.join(hold_tasks or ['all'])})")

    def loss_fn(m, b):
        if teacher is not None and next(teacher.parameters()).device != b.value.device:
            teacher.to(b.value.device)
        return world_model_loss(m, b, schedule, teacher, keep, high_noise, teacher_shared=bool(reason_own))

    # shifted for the data's resolution (every shard's latents share one grid: ClipTasks concatenates them)
    schedule = schedule_for(config, size=dataset_size(dataset, config))
    # the run's text tokenizer goes into every checkpoint folder, so Pipeline.from_pretrained loads any of them
    text_file = Path(text.save(out / "text")) if rank == 0 else out / "text" / "tokenizer.json"
    trainer = Trainer(model, loss_fn, dataset, tc, config, kind=KIND, collate_fn=collate,
                      find_unused_parameters=True, extra_files={"tokenizer.json": text_file})
    final = trainer.fit()
    del trainer
    cleanup_distributed()
    return final


def widen_adapter(state: dict, want: dict) -> None:
    """A checkpoint's reasoner adapter raised in place to the model's larger rank: the new rows of each A start as a
    fresh model's and the new columns of each B at zero, so the adapted reasoner starts exactly as the checkpoint's
    (B A x is unchanged) and the added rank still learns (A's new rows get gradient through B, B's through A)."""
    widened = set()
    for k, v in list(state.items()):
        if ".lora." in k and k in want and v.shape != want[k].shape:
            axis = 0 if k.endswith(".A") else 1  # A [rank, in], B [out, rank]
            extra = want[k].narrow(axis, v.shape[axis], want[k].shape[axis] - v.shape[axis]).float()
            state[k] = torch.cat([v, extra if axis == 0 else torch.zeros_like(extra)], axis)
            widened.add((v.shape[axis], want[k].shape[axis]))
    for have, rank in widened:
        print(f"init: the reasoner's adapter widens from rank {have} to {rank}; the new rank starts with no effect")


def mean_adapters(states: list[dict], names: list[str], rank: int | None = None) -> dict:
    """The mean of rounds' weights with each reasoner adapter averaged as the update it makes, B A, not factor by
    factor (the mean of the factors is not the mean of their products). The mean of B_i A_i over n rounds is the
    product of [B_1 .. B_n] / n and [A_1; ..; A_n], so the exact mean has the sum of the rounds' ranks (which may
    differ); a smaller `rank` keeps its leading singular directions, B = U sqrt(S), A = sqrt(S) V^T. Every other
    tensor is the plain mean (checkpoint.mean_state). The result's rank is its A's first dimension."""
    lora = [{k for k in s if ".lora." in k} for s in states]
    for keys, name in zip(lora[1:], names[1:]):
        if keys != lora[0]:
            raise CheckpointError(f"cannot average {name} with {names[0]}: their reasoner adapters cover different "
                                  f"layers ({sorted(keys ^ lora[0])[:3]})")
    out = mean_state([{k: v for k, v in s.items() if ".lora." not in k} for s in states], names)
    for key in sorted(k for k in lora[0] if k.endswith(".A")):
        site = key[:-len(".A")]
        B = torch.cat([s[site + ".B"].float() / len(states) for s in states], 1)  # [out, sum of ranks]
        A = torch.cat([s[site + ".A"].float() for s in states], 0)  # [sum of ranks, in]
        if rank is not None and rank < A.shape[0]:
            U, S, Vh = torch.linalg.svd(B @ A, full_matrices=False)
            root = S[:rank].sqrt()
            B, A = U[:, :rank] * root, root[:, None] * Vh[:rank]
        out[site + ".A"], out[site + ".B"] = A, B
    return out


PROJECTIONS = ("qkv", "proj", "gate_up", "down")  # the reasoner adapter's sites in each layer (attention, MLP)


def graft_adapter(state: dict, donor: dict, layers, projections=PROJECTIONS, name: str = "donor") -> dict:
    """`state` with the reasoner adapter of some layers and projections taken from `donor` (a round trained from
    the same starting point): which parts of a round's update carry what it learned, or a checkpoint made of the
    parts that help. layers: indices; projections: of PROJECTIONS. Every other tensor stays `state`'s."""
    bad = set(projections) - set(PROJECTIONS)
    if bad:
        raise ValueError(f"graft: unknown adapter projections {sorted(bad)} (expected some of {PROJECTIONS})")
    out = dict(state)
    for key in state:
        if ".lora." not in key:
            continue
        parts = key.split(".")  # backbone.layers.{i}.und.lora.{projection}.{A|B}
        if int(parts[2]) in layers and parts[5] in projections:
            if key not in donor or donor[key].shape != state[key].shape:
                raise CheckpointError(f"graft: {name} has no adapter tensor {key} of shape {tuple(state[key].shape)}")
            out[key] = donor[key]
    return out


def parse_weights(spec: str | None, flag: str = "--reason-task-weights", what: str = "TASK") -> dict | None:
    """'timing=4,count=2' -> {'timing': 4.0, 'count': 2.0}"""
    if not spec:
        return None
    out = {}
    for part in spec.split(","):
        name, sep, w = part.partition("=")
        try:
            out[name.strip()] = float(w)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"{flag}: expected {what}=WEIGHT pairs separated by commas, got {spec!r}")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train the world model on episodes (a mixture of every mode)")
    p.add_argument("--preset", default="small", help="tiny | small | base | large")
    p.add_argument("--data", nargs="*", default=[],
                   help="folders holding datasets (kinema worlds generate); may be left out when training on questions "
                        "alone (--reason-weight 1) from --init")
    add_train_flags(p, ("out",), out="outputs/runs/world-model")
    p.add_argument("--video-tokenizer", default="checkpoints/tokenizer-cv4x8x8", help="the continuous video tokenizer the model sees through (default: %(default)s)")
    p.add_argument("--audio-tokenizer", default="checkpoints/tokenizer-audio", help="the audio tokenizer (default: %(default)s)")
    p.add_argument("--schedule", default="rectified_flow", choices=["rectified_flow", "edm"], help="the diffusion schedule (default: %(default)s)")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (post-training)")
    p.add_argument("--embodiment", action="append", default=[], metavar="NAME:DIM[:after|at]",
                   help="register a new embodiment (your robot: DIM numbers an action, 'after' = row t acts after "
                        "frame t is seen, the default; 'at' = row t is frame t's pose), fresh or with --init; its "
                        "episodes (family 'tabletop' or 'camera') are matched by their action names, else by DIM, "
                        "and its action statistics come from them. Repeatable")
    p.add_argument("--frame-condition", action="store_true",
                   help="with --init from a checkpoint without them (or with fewer action rows): add the preset's "
                        "given-frame inputs (zero-initialised)")
    p.add_argument("--reason-audio", action="store_true",
                   help="the reasoner hears each video's sound (its audio latents join the video's tokens); with "
                        "--init it is switched on for a checkpoint trained without it")
    p.add_argument("--reason-pixels", type=int, default=0, metavar="CELL",
                   help="the reasoner also sees each vision token's pixels, average-pooled to CELLxCELL cells (e.g. 4; "
                        "0: latents only); with --init it is switched on for a checkpoint trained without it; with "
                        "--reason-adapter only questions read them, so the generator stays as it was")
    p.add_argument("--mixture", default="all", choices=["all", "actions"],
                   help="all: every mode on every world; actions: action post-training on the worlds with actions")
    p.add_argument("--mode-weights", default=None,
                   help="scale the mixture's weight of some modes, e.g. text2video=3 (others 1), in every world "
                        "family that trains them")
    p.add_argument("--freeze-reasoner", action="store_true",
                   help="train the generator only: the reasoner expert and the input adapters it reads stay fixed, so "
                        "its answers do not change (use with --init and --reason-weight 0)")
    p.add_argument("--reason-adapter", type=int, default=0, metavar="RANK",
                   help="add a LoRA of this rank to the reasoner that only questions take, and train it (with the "
                        "text head) alone: the reasoner learns, every generator output stays exactly as it was "
                        "(use with --init and --reason-weight 1; a larger rank than --init's widens its adapter, "
                        "which starts unchanged)")
    p.add_argument("--inverse-adapter", type=int, default=0, metavar="RANK",
                   help="add a LoRA of this rank to the generator that only inverse-dynamics samples take, and train "
                        "it alone on inverse dynamics: every other mode and the reasoner stay exactly as they were "
                        "(use with --init, --reason-weight 0 and --mixture actions)")
    p.add_argument("--inverse-context", type=int, default=0, metavar="RANK",
                   help="with --inverse-adapter: also a LoRA of this rank on the reasoner that inverse-dynamics "
                        "samples' given frames and prompt take, trained with it, so inverse dynamics reads its frames "
                        "through weights of its own (every other mode and the reasoner still stay as they were)")
    p.add_argument("--inverse-own", default=None, metavar="EMBODIMENT",
                   help="with --inverse-adapter: this embodiment's inverse-dynamics samples take adapters of their "
                        "own, which start as the shared ones and alone train: its inverse dynamics learns while every "
                        "other embodiment's stays exactly as it was (give data of this embodiment only: the others' "
                        "samples would pass through frozen weights)")
    p.add_argument("--reason-own", default=None, metavar="WORLD",
                   help="questions about this world take a reasoner adapter of its own, an update on top of the "
                        "shared one that starts at zero and alone trains, on this world's questions only: its answers "
                        "learn while every other world's and the generator stay exactly as they were (use with --init, "
                        "--reason-weight 1 and --reason-data; asked with `kinema reason --domain WORLD`)")
    p.add_argument("--reason-own-rank", type=int, default=0, metavar="RANK",
                   help="with --reason-own: the rank of the world's own adapter, an update added on top of the shared "
                        "one (0: the shared one's rank)")
    p.add_argument("--high-noise-share", type=float, default=0.0, metavar="P",
                   help="draw a share P of the samples' noise levels uniformly from t in [0.9, 1] (rectified flow), "
                        "where inverse dynamics' one-step estimate is made; the rest from the schedule (0: all)")
    p.add_argument("--reason-adapter-layers", type=int, default=None, metavar="N",
                   help="with --reason-adapter: only the adapter of the first N layers trains; the later layers' "
                        "adapters, the pixel view, final norm and text head stay as --init has them")
    p.add_argument("--reason-data", nargs="*", default=None,
                   help="more folders for reasoner questions only (e.g. implausible twins, kept out of the generator); "
                        "a folder of reasoner shards built before (a run's reason_latents) is taken as it is")
    p.add_argument("--reason-weight", type=float, default=0.5,
                   help="probability that a sample is a reasoner question (0: generator only)")
    p.add_argument("--reason-task-weights", default=None,
                   help="draw some reasoner tasks more often, e.g. timing=4 (others 1; tasks as eval reason names them)")
    p.add_argument("--reason-question", default=None, metavar="TEXT",
                   help="ask only this question of the clips (exact text, e.g. \"Which end of the seesaw ends up "
                        "lower?\"): a drill on one question")
    p.add_argument("--reason-question-share", type=float, default=None, metavar="P",
                   help="with --reason-question: draw that question a fraction P of the time and the whole mixture "
                        "(with its task weights) the rest, rather than the question alone")
    p.add_argument("--reason-question-data", nargs="*", default=None, metavar="DIR",
                   help="with --reason-question: folders (datasets or reasoner shards) whose clips give only that "
                        "question, so a drill's extra episodes do not tilt the rest of the mixture towards their world")
    p.add_argument("--reason-keep", type=float, default=0.0, metavar="WEIGHT",
                   help="with --init: keep the starting checkpoint's answers where they are right (KL to its "
                        "distribution at those answer tokens, times WEIGHT), meant to let a drill of one question keep "
                        "the rest (on the seesaw's drill it did not: BENCHMARKS.md, 'Keeping what it knew'; 0: off)")
    p.add_argument("--reason-keep-tasks", default=None, metavar="TASK,...",
                   help="with --reason-keep: keep the answers of these tasks only (e.g. plausibility), so the rest "
                        "learn freely; with --reason-own the teacher is the shared adapter (default: every task)")
    p.add_argument("--stride", type=int, default=32, help="frames between clip starts in long episodes")
    add_train_flags(p, ("steps", "batch_size", "grad_accum", "lr", "warmup", "ema_decay"), steps=6000, batch_size=16,
                    lr=5e-4, warmup=200)
    p.add_argument("--cond-dropout", type=float, default=0.15, help="probability of dropping the text (for CFG)")
    add_train_flags(p, ("dtype", "device"), dtype="bf16")
    p.add_argument("--sharding", default="ddp", choices=["ddp", "fsdp"],
                   help="under torchrun: ddp replicates the model on every rank, fsdp shards weights, grads "
                        "and AdamW state (FSDP2, for base/large); one process trains unsharded either way")
    p.add_argument("--workers", type=int, default=0,
                   help="processes that build batches beside training (0: in the training process; a GPU wants some)")
    add_train_flags(p, ("seed", "ckpt_every", "log_every"), ckpt_every=250, log_every=25)
    p.set_defaults(func=train)
