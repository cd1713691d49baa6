"""Is the first collision's time in the sound the reasoner hears? A hand-made reading of the same audio tokens.

    python scripts/sound_onset.py --latents outputs/eval-reason-hear2/latents --model outputs/cand/world-model-hear

Reads the reasoner latents that `kinema eval reason` built for a model that hears (each episode's audio
latents, 25 frames/s), and answers every first-collision question with nothing learned: the first audio
latent frame at or after SKIP_S whose energy (mean square of the model's audio values, standardised and
asinh-compressed as the model sees them) is above FLOOR times the median frame's. Prints the MAE in
seconds over questions with a collision, and how often it says collision or none rightly.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.model.data import audio_to_model  # noqa: E402
from kinema.model.reason_data import load_reason_shards  # noqa: E402

SKIP_S = 0.12  # bodies placed touching settle in the first physics steps ("resting", not a collision)
FLOOR = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latents", required=True, help="the latents folder of a `kinema eval reason --out` run that heard")
    ap.add_argument("--model", required=True, help="the checkpoint whose audio statistics standardise the latents")
    args = ap.parse_args()
    cfg = json.loads((Path(args.model) / "config.json").read_text())["model"]
    mean, std = torch.tensor(cfg["audio_mean"]).view(-1, 1), torch.tensor(cfg["audio_std"]).view(-1, 1)
    rate = cfg["audio_rate"]
    _, clips, audio, _ = load_reason_shards(sorted(Path(args.latents).glob("*.safetensors")))
    if not any(a is not None for a in audio):
        raise SystemExit(f"--latents: {args.latents} holds no audio latents (evaluate a model that hears)")
    rows = [(c["world"], q.get("value"), (audio_to_model(a.float(), mean, std) ** 2).mean(0).numpy())
            for c, a in zip(clips, audio) if a is not None
            for q in c["questions"] if q["type"] == "first_collision_time"]
    floor = FLOOR * float(np.median(np.concatenate([e for _, _, e in rows])))
    errors, right, alarms = [], [], Counter()
    for world, value, energy in rows:
        loud = np.nonzero(energy > floor)[0]
        loud = loud[loud >= round(SKIP_S * rate)]
        said = (loud[0] + 0.5) / rate if len(loud) else None
        timed = isinstance(value, (int, float))
        right.append((said is not None) == timed)
        if timed:
            errors.append(abs(said - value) if said is not None else 2.0)
        elif said is not None:
            alarms[world] += 1
    print(f"{len(rows)} timing questions, {len(errors)} with a collision: MAE {np.mean(errors):.3f} s "
          f"(median error {np.median(errors):.3f} s); collision or none right {np.mean(right):.3f}")
    print("a time said where nothing collides, by world:", dict(alarms))


if __name__ == "__main__":
    main()
