"""`kinema ar ...`: train, fine-tune Medusa heads for, evaluate and ship the autoregressive world model."""

from __future__ import annotations

from kinema.train.config import add_train_flags


def _common(p, *, steps: int, batch: int, lr: float, warmup: int, ckpt: int) -> None:
    p.add_argument("--data", nargs="+", required=True, help="folders holding datasets (kinema worlds generate)")
    p.add_argument("--codes", default=None, help="folder of the clips' DV codes (built once; default OUT/codes)")
    p.add_argument("--video-tokenizer", default="checkpoints/tokenizer-dv4x8x8", help="the discrete (FSQ) video tokenizer whose codes are predicted (default: %(default)s)")
    p.add_argument("--stride", type=int, default=32, help="frames between clip starts in long episodes")
    add_train_flags(p, ("steps", "batch_size", "grad_accum", "lr", "warmup", "ema_decay", "dtype", "device", "seed",
                        "ckpt_every", "log_every"), steps=steps, batch_size=batch, lr=lr, warmup=warmup, dtype="bf16",
                    ckpt_every=ckpt, log_every=10)


def add_parsers(sub) -> None:
    from kinema.model import ar_train

    ar = sub.add_parser("ar", help="the autoregressive world model over DV codes (Cosmos-1 style, Medusa decoding)")
    cmds = ar.add_subparsers(dest="ar_command", required=True)

    t = cmds.add_parser("train", help="train the AR world model on episodes (next-code CE + z-loss)")
    t.add_argument("--preset", default="small", help="tiny | small | base")
    add_train_flags(t, ("out",), out="outputs/runs/ar-world-model")
    _common(t, steps=2000, batch=8, lr=1e-3, warmup=100, ckpt=50)
    t.set_defaults(func=ar_train.train)

    m = cmds.add_parser("medusa", help="add Medusa heads to a trained AR model and fine-tune them")
    m.add_argument("--init", required=True, help="the trained AR checkpoint folder (e.g. OUT/final)")
    add_train_flags(m, ("out",), out="outputs/runs/ar-world-model-medusa")
    m.add_argument("--heads", type=int, default=5, help="Medusa heads: codes t+2 .. t+heads+1")
    m.add_argument("--train-layers", type=int, default=1, help="last backbone layers trained with the heads")
    m.add_argument("--positions", type=int, default=512, help="positions per batch scored (base and heads)")
    _common(m, steps=300, batch=8, lr=1e-3, warmup=20, ckpt=50)
    m.set_defaults(func=ar_train.train_medusa)

    e = cmds.add_parser("eval", help="held-out next-code CE and accuracy (vs copying the previous frame), Medusa "
                                     "acceptance")
    e.add_argument("--model", required=True, help="an AR checkpoint folder")
    e.add_argument("--data", nargs="+", required=True, help="held-out datasets")
    e.add_argument("--codes", required=True, help="folder for their DV codes (built once)")
    e.add_argument("--video-tokenizer", default=None, help="default: the one the model names, beside it")
    e.add_argument("--clips", type=int, default=64, help="held-out clips scored (default: %(default)s)")
    e.add_argument("--medusa-clips", type=int, default=4, help="clips decoded with Medusa for its acceptance rate (default: %(default)s)")
    e.add_argument("--json", default=None, help="also write the report here")
    e.set_defaults(func=ar_train.run_evaluate)

    g = cmds.add_parser("generate", help="continue a video code by code: video.mp4 (given + generated), contact.png, "
                                         "request.json")
    g.add_argument("--model", default="checkpoints/ar-world-model-small", help="an AR checkpoint folder (default: "
                   "%(default)s); its DV tokenizer is the folder its config names, beside it")
    g.add_argument("--vision_path", required=True, help="the video (or image) to continue")
    g.add_argument("--context_frames", type=int, default=9, help="given frames from its start: 1 + 4j, at most 9 "
                   "(default: %(default)s)")
    g.add_argument("--num_frames", type=int, default=33, help="frames of the whole result, given ones included; past 33 "
                   "it continues window by window (default: %(default)s)")
    g.add_argument("--action_path", default=None, help="actions as JSON rows (or .npy), one per frame of the result, "
                   "of a registered embodiment (tabletop: row t acts after frame t)")
    g.add_argument("--temperature", type=float, default=None, help="default: the model's (1.0); 0 is greedy")
    g.add_argument("--top_p", type=float, default=None, help="nucleus sampling mass (default: the model's, 0.8)")
    g.add_argument("--top_k", type=int, default=0, help="keep the k likeliest codes (0: all)")
    g.add_argument("--medusa", action="store_true", help="greedy, with speculative decoding over the Medusa tree "
                   "(the same codes as greedy, faster)")
    g.add_argument("--seed", type=int, default=0, help="the sampling seed (default: %(default)s)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    g.add_argument("--out", default="outputs/ar-generate", help="output folder (default: %(default)s)")
    g.set_defaults(func=generate)

    s = cmds.add_parser("ship", help="a run's final EMA weights as a bf16 checkpoint folder")
    s.add_argument("--run", required=True, help="the run's final/ folder")
    s.add_argument("--out", required=True, help="e.g. checkpoints/ar-world-model-small")
    s.add_argument("--max-mb", type=float, default=15.0, help="refuse to ship a checkpoint larger than this (default: %(default)s)")
    s.set_defaults(func=ar_train.ship)


def generate(args) -> dict:
    """`kinema ar generate`: every argument checked before the model loads; -> the paths written."""
    import json
    import time
    from pathlib import Path

    import numpy as np

    from kinema.eval.predictor import PredictionRequest, predict_checked
    from kinema.model.autoregressive import AR_SAMPLING
    from kinema.model.generate import load_actions, load_vision
    from kinema.train.checkpoint import read_json, write_json

    n_ctx, total = args.context_frames, args.num_frames
    if n_ctx < 1 or (n_ctx - 1) % 4 or n_ctx > 9:
        raise ValueError(f"context_frames: expected 1, 5 or 9 (1 + 4j, at most 9), got {n_ctx}")
    if not n_ctx < total <= 401:
        raise ValueError(f"num_frames: expected more than context_frames ({n_ctx}) and at most 401, got {total}")
    temperature = AR_SAMPLING.temperature if args.temperature is None else args.temperature
    if args.medusa and args.temperature not in (None, 0):
        raise ValueError(f"medusa: Medusa decoding is greedy; leave out --temperature (got {args.temperature})")
    if not (Path(args.model) / "config.json").is_file():
        raise FileNotFoundError(f"model: {args.model} is not a checkpoint folder (no config.json)")
    context, fps = load_vision(args.vision_path, n_ctx)
    actions, names, timing = None, (), "after"
    if args.action_path:
        actions = load_actions(args.action_path)
        if len(actions) != total:
            raise ValueError(f"action_path: expected one row per frame of the result ({total}), got {len(actions)}")
        embodiments = read_json(Path(args.model) / "config.json")["model"]["embodiments"]
        match = [e for e in embodiments if e["dim"] == actions.shape[1]]
        if len(match) != 1:
            raise ValueError(f"action_path: {actions.shape[1]} numbers a row; the model's embodiments take "
                             + ", ".join(f"{e['name']} {e['dim']}" for e in embodiments))
        names, timing = tuple(match[0]["action_names"]), match[0]["timing"]

    from kinema.model.ar_predictor import load_predictor

    predictor = load_predictor(args.model, device=args.device, temperature=0.0 if args.medusa else temperature,
                               top_p=AR_SAMPLING.top_p if args.top_p is None else args.top_p, top_k=args.top_k,
                               seed=args.seed, medusa=args.medusa, progress=True)
    req = PredictionRequest(context=context, num_frames=total - n_ctx, fps=fps or 16.0, camera="given",
                            actions=actions, action_names=names, action_timing=timing)
    t0 = time.perf_counter()
    future = predict_checked(predictor, req)
    seconds = time.perf_counter() - t0

    from kinema.data.video_io import encode_video
    from kinema.worlds.preview import contact_sheet, write_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"video": encode_video(out / "video.mp4", np.concatenate([context, future]), req.fps),
             "contact_sheet": write_png(out / "contact.png", contact_sheet(
                 [("given", context), ("generated", future)], columns=min(8, len(future)), scale=2))}
    write_json(out / "request.json", {k: v for k, v in vars(args).items() if k != "func"})
    print(f"{len(future)} frames in {seconds:.1f} s ({len(future) / seconds:.1f} generated frames/s); "
          f"{json.dumps({k: str(v) for k, v in paths.items()})}")
    return {k: str(v) for k, v in paths.items()}


def main(argv=None) -> int:
    """`python -m kinema.model.ar_cli train ...`: the same commands without the `kinema` entry point."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m kinema.model.ar_cli")
    add_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["ar", *(argv if argv is not None else __import__("sys").argv[1:])])
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
