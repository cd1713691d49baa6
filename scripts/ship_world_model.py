"""Export a world-model run into checkpoints/ with the outputs its regression test checks.

    python scripts/ship_world_model.py --run outputs/runs/world-model-small --out checkpoints/world-model-small
    python scripts/ship_world_model.py --run RUN --average RUN2 [RUN3...] --out DIR  (the mean of runs' final weights)
    python scripts/ship_world_model.py --run RUN --average RUN2 --adapter-mean products [--adapter-rank R] --out DIR
                                   (each reasoner adapter averaged as the update B A it makes: model.train.mean_adapters)
    python scripts/ship_world_model.py --run RUN --graft RUN2 --graft-layers 0-2 [--graft-projections qkv,proj] --out DIR
                                   (RUN's weights with those layers' reasoner adapter from RUN2: model.train.graft_adapter)
    python scripts/ship_world_model.py --expected-only --out checkpoints/world-model-small   (after a tokenizer's
                                                                          decoder changed: same weights)

Takes OUT/final when the run finished, else the EMA weights of its newest step
checkpoint; stores them in bf16 with config.json and the text tokenizer, and
writes expected.json: the demo's forward-dynamics prediction (fixed seed) scored
against the simulator, recomputed from the stored weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.model.demo import REGRESSION, regression_outputs  # noqa: E402
from kinema.model.train import PROJECTIONS, graft_adapter, mean_adapters  # noqa: E402
from kinema.train.checkpoint import (latest_checkpoint, load_pretrained, load_train_checkpoint,  # noqa: E402
                                     mean_state, save_pretrained, write_json)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="outputs/runs/world-model-small",
                    help="a training run's folder, or a shipped checkpoint folder (model.safetensors)")
    ap.add_argument("--out", default="checkpoints/world-model-small")
    ap.add_argument("--latest", action="store_true", help="the newest step checkpoint even when final/ exists")
    ap.add_argument("--average", nargs="+", metavar="RUN", default=[],
                    help="ship the mean of these runs' final weights and --run's (rounds from one starting point: "
                         "every tensor is averaged, so those all share stay as they are; the config is --run's); "
                         "a folder holding model.safetensors (a shipped checkpoint) is taken as it is")
    ap.add_argument("--adapter-mean", choices=["factors", "products"], default="factors",
                    help="with --average: the reasoner adapters' A and B averaged each (factors: how f6ae244's weights "
                         "were made) or the mean of their updates B A (products: exact, at the sum of the ranks)")
    ap.add_argument("--adapter-rank", type=int, default=None,
                    help="with --adapter-mean products: keep this many leading singular directions of each mean update")
    ap.add_argument("--graft", metavar="RUN", default=None,
                    help="take the reasoner adapter of --graft-layers (and --graft-projections) from this run or "
                         "shipped folder, everything else from --run")
    ap.add_argument("--graft-layers", default=None, metavar="FIRST-LAST", help="with --graft: e.g. 0-2")
    ap.add_argument("--graft-projections", default=",".join(PROJECTIONS),
                    help=f"with --graft: some of {','.join(PROJECTIONS)} (attention: qkv,proj; MLP: gate_up,down)")
    ap.add_argument("--expected-only", action="store_true", help="only recompute OUT/expected.json")
    args = ap.parse_args()
    run, dest = Path(args.run), Path(args.out)
    if args.expected_only:
        step = json.loads((dest / "expected.json").read_text())["trained_steps"]
    elif (run / "model.safetensors").exists():  # a shipped folder
        config, state = load_pretrained(run)
        step = json.loads((run / "expected.json").read_text())["trained_steps"] if (run / "expected.json").exists() else run.name
    elif (run / "final" / "model.safetensors").exists() and not args.latest:
        config, state = load_pretrained(run / "final")
        step = "final"
    else:
        ckpt = load_train_checkpoint(latest_checkpoint(run / "checkpoints"))
        config, state, step = ckpt.config, ckpt.ema_state or ckpt.model_state, ckpt.step
    if args.average and not args.expected_only:
        others = [load_pretrained(Path(r) if (Path(r) / "model.safetensors").exists() else Path(r) / "final")[1]
                  for r in args.average]
        names = [str(run), *args.average]
        if args.adapter_mean == "products":
            state = mean_adapters([state, *others], names, args.adapter_rank)
            rank = next(v.shape[0] for k, v in state.items() if k.endswith(".lora.qkv.A"))
            config = config | {"model": config["model"] | {"reason_adapter": rank}}
        else:
            state = mean_state([state, *others], names)
        step = f"{step} averaged with {', '.join(args.average)}"
    if args.graft and not args.expected_only:
        first, _, last = (args.graft_layers or "").partition("-")
        if not (first.isdigit() and (last or first).isdigit()):
            ap.error(f"--graft-layers: expected FIRST-LAST (e.g. 0-2), got {args.graft_layers!r}")
        donor = Path(args.graft)
        donor = donor if (donor / "model.safetensors").exists() else donor / "final"
        projections = args.graft_projections.split(",")
        state = graft_adapter(state, load_pretrained(donor)[1], range(int(first), int(last or first) + 1),
                              projections, name=str(donor))
        step = f"{step} with {args.graft}'s adapter in layers {args.graft_layers} ({args.graft_projections})"
    if not args.expected_only:
        save_pretrained(dest, state, config, dtype=torch.bfloat16)
        text = run / "tokenizer.json" if (run / "model.safetensors").exists() else run / "text" / "tokenizer.json"
        if text.resolve() != (dest / "tokenizer.json").resolve():
            shutil.copy(text, dest / "tokenizer.json")
    for key in ("video_tokenizer", "audio_tokenizer"):  # a checkpoint finds its tokenizers beside it
        name = json.loads((dest / "config.json").read_text())["model"][key]
        beside, shipped = dest.parent / name, Path("checkpoints") / name
        if not beside.exists() and shipped.is_dir():
            beside.symlink_to(Path(os.path.relpath(shipped.resolve(), dest.parent.resolve())))
            print(f"{beside} -> {shipped} (the model's {key.replace('_', ' ')}, linked beside it)")
    torch.set_num_threads(1)
    expected = regression_outputs(dest) | {"clip": REGRESSION, "trained_steps": step}
    write_json(dest / "expected.json", expected)
    print(dest, {k: v for k, v in expected.items() if k != "frame_means"},
          f"{sum(p.stat().st_size for p in dest.iterdir()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
