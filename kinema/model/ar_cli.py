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

    s = cmds.add_parser("ship", help="a run's final EMA weights as a bf16 checkpoint folder")
    s.add_argument("--run", required=True, help="the run's final/ folder")
    s.add_argument("--out", required=True, help="e.g. checkpoints/ar-world-model-small")
    s.add_argument("--max-mb", type=float, default=15.0, help="refuse to ship a checkpoint larger than this (default: %(default)s)")
    s.set_defaults(func=ar_train.ship)


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
