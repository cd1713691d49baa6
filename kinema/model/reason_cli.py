"""`kinema reason` (answer a question about a video, streaming) and `kinema eval reason`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

DEFAULT_MODEL = "checkpoints/world-model-small"


def _reason(args):
    from kinema.model.decoding import SamplingParams
    from kinema.model.reasoner import Reasoner

    params = SamplingParams(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, seed=args.seed,
                            stop=args.stop or ())  # validates before loading
    content = []
    for kind in ("video", "image"):
        path = getattr(args, kind)
        if path:
            if not Path(path).is_file():
                raise SystemExit(f"--{kind}: {path} does not exist")
            content.append({"type": kind, kind: path, **({"fps": args.fps} if args.fps else {})})
    content.append({"type": "text", "text": args.prompt})
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": content}]
    reasoner = Reasoner.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    if args.domain is not None and args.domain not in reasoner.config.reason_own:
        print(f"--domain {args.domain}: {args.model} has no adapter of that world's own (it has "
              f"{list(reasoner.config.reason_own) or 'none'}); asking through the shared one", file=sys.stderr)
    if args.no_stream:
        print(reasoner.answer(messages, params, domain=args.domain))
        return
    for piece in reasoner.stream(messages, params, domain=args.domain):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _eval_reason(args):
    from kinema.model.reason_eval import evaluate, table
    from kinema.model.reasoner import Reasoner
    from kinema.train.checkpoint import write_json

    t0 = time.time()
    reasoner = Reasoner.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    out = Path(args.out)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    res = evaluate(reasoner, args.data, out, max_per_task=args.max_per_task, seed=args.seed, tasks=tasks,
                   other_video=args.other_video, mute=args.mute, progress=not args.no_progress,
                   by_world=not args.no_domain)
    out.mkdir(parents=True, exist_ok=True)  # data given as shards built before writes nothing under out until here
    write_json(out / "reason.json", res)
    (out / "reason.md").write_text(table(res["summary"]) + "\n")
    print(table(res["summary"]))
    print(f"wrote {out / 'reason.json'} and reason.md in {time.time() - t0:.0f} s")


def _common(p):
    p.add_argument("--model", default=DEFAULT_MODEL, help="a world-model checkpoint folder")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when there is one")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="autocast precision (default: %(default)s)")


def add_parser(sub) -> None:
    p = sub.add_parser("reason", help="answer a question about a video or image with the reasoner (streams tokens)")
    p.add_argument("--prompt", required=True, help="the question")
    p.add_argument("--video", default=None, help="a video file (mp4, ...)")
    p.add_argument("--image", default=None, help="an image file (png, jpg)")
    p.add_argument("--fps", type=float, default=None, help="override the video's frame rate")
    p.add_argument("--system", default=None, help="a system prompt")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default, as Cosmos 3's reasoner)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling: the smallest set with this much probability")
    p.add_argument("--max-new-tokens", type=int, default=128, help="stop after this many tokens (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (with --temperature > 0)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="end the answer before this text (repeatable; the text itself is not printed; "
                        "a newline in bash: --stop $'\\n')")
    p.add_argument("--no-stream", action="store_true", help="print the whole answer at the end")
    p.add_argument("--domain", default=None, metavar="WORLD",
                   help="the world the video shows (Cosmos' domain_name): a world with a reasoner adapter of its own "
                        "(the checkpoint's reason_own) is asked through it; default: the shared adapter")
    _common(p)
    p.set_defaults(func=_reason)


def add_eval_parser(e) -> None:
    r = e.add_parser("reason", help="reasoner accuracy per task on held-out episodes vs majority and blind baselines")
    r.add_argument("--data", nargs="+", default=["outputs/data/heldout", "outputs/data/heldout-reason"],
                   help="held-out dataset folders (kinema worlds generate; twins for plausibility)")
    r.add_argument("--out", default="outputs/eval/reason", help="output folder (default: %(default)s)")
    r.add_argument("--max-per-task", type=int, default=120, help="questions asked per task (default: %(default)s)")
    r.add_argument("--tasks", default=None, help="comma-separated subset of the tasks (default: all)")
    r.add_argument("--seed", type=int, default=0, help="which questions are drawn, where a task has more")
    r.add_argument("--other-video", action="store_true",
                   help="ask each question about another episode of the same world (baseline: world recognition only)")
    r.add_argument("--mute", action="store_true",
                   help="a model that hears (reason_audio) is asked about the silent videos: what the sound adds")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--no-domain", action="store_true",
                   help="do not tell the model which world each clip shows: every question through the shared "
                        "adapter, none through a world's own (reason_own)")
    _common(r)
    r.set_defaults(func=_eval_reason)
