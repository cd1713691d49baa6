"""Export trained tokenizer runs into checkpoints/ with the outputs their regression test checks.

    python scripts/ship_tokenizers.py --runs outputs/runs --out checkpoints [--dtype bf16] [--cv RUN --dv RUN --audio RUN] [--only cv,dv]

Each shipped folder holds config.json + model.safetensors (the EMA weights, stored
in --dtype to halve the size) and expected.json: PSNR/SSIM (or SNR) and, for the
DV tokenizer, the token indices on a fixed simulated clip, recomputed from the
stored weights so the test compares like with like.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.tokenize.evaluate import REGRESSION_CLIP, regression_outputs  # noqa: E402
from kinema.tokenize.load import load_tokenizer  # noqa: E402
from kinema.train.checkpoint import load_pretrained, save_pretrained, write_json  # noqa: E402

SHIPPED = {"cv": "tokenizer-cv4x8x8", "dv": "tokenizer-dv4x8x8", "audio": "tokenizer-audio"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="outputs/runs")
    ap.add_argument("--out", default="checkpoints")
    ap.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"))
    for key, name in SHIPPED.items():
        ap.add_argument(f"--{key}", default=name.removeprefix("tokenizer-"), help=f"the run under --runs shipped as {name}")
    ap.add_argument("--only", default=",".join(SHIPPED), help="which of them to export (comma-separated keys)")
    args = ap.parse_args()
    only = args.only.split(",")
    if unknown := set(only) - set(SHIPPED):
        ap.error(f"--only: unknown {sorted(unknown)}; expected some of {', '.join(SHIPPED)}")
    for key, name in SHIPPED.items():
        if key not in only:
            continue
        run = getattr(args, key)
        config, state = load_pretrained(Path(args.runs) / run / "final")
        dest = Path(args.out) / name
        save_pretrained(dest, state, config, dtype=torch.bfloat16 if args.dtype == "bf16" else None)
        expected = regression_outputs(load_tokenizer(dest)) | {"clip": REGRESSION_CLIP}
        write_json(dest / "expected.json", expected)
        print(name, {k: v for k, v in expected.items() if k != "indices"})


if __name__ == "__main__":
    main()
