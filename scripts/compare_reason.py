"""Compare two reasoners answer by answer on the same held-out questions (`kinema eval reason` outputs).

    python scripts/compare_reason.py BASE_OUT MODEL_OUT [BASE_OUT2 MODEL_OUT2 ...] [--by question] [--world NAME]

Each OUT is an `--out` folder of `kinema eval reason` (its reason.json); pairs are pooled (e.g. one per seed
set). Prints per task (or per question) both accuracies, the answers only the model gets right and only the
base gets right, and the sign test's p of that split (kinema.model.reason_eval.paired). --world NAME: that world's
questions only; --but NAME: every other world's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kinema.model.reason_eval import paired, sign_test  # noqa: E402


def rows(folder: str, world: str | None = None, but: str | None = None) -> list[dict]:
    path = Path(folder) / "reason.json"
    if not path.is_file():
        raise SystemExit(f"compare_reason: {path} not found (expected a `kinema eval reason --out` folder)")
    return [r for r in json.loads(path.read_text())["rows"]
            if (world is None or r["world"] == world) and (but is None or r["world"] != but)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outs", nargs="+", metavar="OUT", help="BASE_OUT MODEL_OUT pairs")
    ap.add_argument("--by", choices=["task", "question"], default="task")
    ap.add_argument("--world", default=None, help="only this world's questions")
    ap.add_argument("--but", default=None, metavar="WORLD", help="every world's questions but this one's")
    args = ap.parse_args()
    if len(args.outs) % 2:
        ap.error(f"expected BASE_OUT MODEL_OUT pairs, got {len(args.outs)} folders")
    total: dict[str, dict] = {}
    for base, model in zip(args.outs[::2], args.outs[1::2]):
        for name, s in paired(rows(base, args.world, args.but), rows(model, args.world, args.but), by=args.by).items():
            t = total.setdefault(name, dict.fromkeys(("n", "base", "model", "gained", "lost"), 0))
            for k in t:
                t[k] += s[k]
    print(f"| {args.by} | n | base | model | gained | lost | sign test p |\n|---|---|---|---|---|---|---|")
    for name, t in sorted(total.items()):
        print(f"| {name} | {t['n']} | {t['base'] / t['n']:.3f} | {t['model'] / t['n']:.3f} | {t['gained']} | "
              f"{t['lost']} | {sign_test(t['gained'], t['lost']):.3f} |")


if __name__ == "__main__":
    main()
