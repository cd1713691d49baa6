"""Export a world-model run into checkpoints/ with the outputs its regression test checks.

    python scripts/ship_world_model.py --run outputs/runs/world-model-small --out checkpoints/world-model-small

Takes OUT/final when the run finished, else the EMA weights of its newest step
checkpoint; stores them in bf16 with config.json and the text tokenizer, and
writes expected.json: the demo's forward-dynamics prediction (fixed seed) scored
against the simulator, recomputed from the stored weights.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.train.checkpoint import (latest_checkpoint, load_pretrained, load_train_checkpoint,  # noqa: E402
                                     save_pretrained, write_json)

REGRESSION = dict(world="push", episode=0, camera="front", context=9, frames=33, num_steps=10, seed=0)


def regression_outputs(model_dir) -> dict:
    """The demo clip predicted by the model at model_dir: PSNR against the simulator and pixel statistics."""
    from kinema.eval.data import heldout_seed
    from kinema.eval.harness import request_from_episode
    from kinema.eval.metrics import psnr
    from kinema.model.pipeline import Pipeline
    from kinema.model.predictor import WorldModelPredictor
    from kinema.worlds.registry import get_world
    from kinema.worlds.rollout import rollout

    r = REGRESSION
    ep = rollout(get_world(r["world"]), heldout_seed(r["episode"]), size=64, frames=r["frames"])
    req = request_from_episode(ep, r["camera"], context=r["context"], future=r["frames"] - r["context"])
    pred = WorldModelPredictor(Pipeline.from_pretrained(model_dir, device="cpu"), num_steps=r["num_steps"],
                               seed=r["seed"]).predict(req)
    gt = ep.frames[r["camera"]][r["context"]:]
    return {"psnr": psnr(pred, gt).value, "mean": float(pred.mean()), "std": float(pred.std()),
            "frame_means": [float(f.mean()) for f in pred]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="outputs/runs/world-model-small")
    ap.add_argument("--out", default="checkpoints/world-model-small")
    args = ap.parse_args()
    run, dest = Path(args.run), Path(args.out)
    if (run / "final" / "model.safetensors").exists():
        config, state = load_pretrained(run / "final")
        step = "final"
    else:
        ckpt = load_train_checkpoint(latest_checkpoint(run / "checkpoints"))
        config, state, step = ckpt.config, ckpt.ema_state or ckpt.model_state, ckpt.step
    save_pretrained(dest, state, config, dtype=torch.bfloat16)
    shutil.copy(run / "text" / "tokenizer.json", dest / "tokenizer.json")
    torch.set_num_threads(1)
    expected = regression_outputs(dest) | {"clip": REGRESSION, "trained_steps": step}
    write_json(dest / "expected.json", expected)
    print(dest, {k: v for k, v in expected.items() if k != "frame_means"},
          f"{sum(p.stat().st_size for p in dest.iterdir()) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
