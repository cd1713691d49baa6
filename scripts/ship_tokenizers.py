"""Export trained tokenizer runs into checkpoints/ with the outputs their regression test checks.

    python scripts/ship_tokenizers.py --runs outputs/runs --out checkpoints [--dtype bf16]

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

SHIPPED = {"tokenizer-cv4x8x8": "cv4x8x8", "tokenizer-dv4x8x8": "dv4x8x8", "tokenizer-audio": "audio"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="outputs/runs")
    ap.add_argument("--out", default="checkpoints")
    ap.add_argument("--dtype", default="bf16", choices=("fp32", "bf16"))
    args = ap.parse_args()
    for name, run in SHIPPED.items():
        config, state = load_pretrained(Path(args.runs) / run / "final")
        dest = Path(args.out) / name
        save_pretrained(dest, state, config, dtype=torch.bfloat16 if args.dtype == "bf16" else None)
        expected = regression_outputs(load_tokenizer(dest)) | {"clip": REGRESSION_CLIP}
        write_json(dest / "expected.json", expected)
        print(name, {k: v for k, v in expected.items() if k != "indices"})


if __name__ == "__main__":
    main()
