"""`kinema eval report`: every benchmark's results under one output folder, on one Markdown page.

Reads `<out>/<benchmark>/<predictor>/summary.json` (written by each benchmark)
and writes `<out>/report.md`: per benchmark, one row per predictor (oracles
marked), next to the published figures of Cosmos 1, Physics-IQ and IRASim,
with a plain statement that those were measured on other data.
"""

from __future__ import annotations

import json
from pathlib import Path

from kinema.eval.results import fmt, markdown_table

COSMOS_PUBLISHED = [  # REFERENCE §8, 9-frame conditioning (7B with 1 frame: IoU 0.332)
    ("Cosmos-1 Diffusion-7B (published)", {"9": (21.06, 0.69, 0.592), "1": (None, None, 0.332)}),
    ("Cosmos-1 Diffusion-14B (published)", {"9": (20.21, 0.64, 0.598)}),
    ("Cosmos-1 AR-4B (published)", {"9": (18.13, 0.48, 0.481)}),
]
DATA_NOTE = ("Published figures were measured on other data (Cosmos 1: its own rendered scenes; Physics-IQ: real "
             "videos; IRASim: its robot datasets). kinema's rows use kinema's simulated worlds: compare protocols "
             "and orders of magnitude, not the numbers.")


def load_summaries(out) -> dict[str, list[dict]]:
    """benchmark -> its summaries, sorted by predictor name."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"--out {out}: no such folder (run a benchmark first: kinema eval physics --baseline copy_last)")
    found: dict[str, list[dict]] = {}
    for path in sorted(out.glob("*/*/summary.json")):
        s = json.loads(path.read_text())
        found.setdefault(s["benchmark"], []).append(s)
    for v in found.values():
        v.sort(key=lambda s: (s["predictor"]["oracle"], s["predictor"]["name"]))
    return found


def _label(s: dict) -> str:
    p = s["predictor"]
    return f"{p['name']}{' (oracle)' if p['oracle'] else ''}"


def _v(d, *keys):
    for k in keys:
        if d is None or k not in d:
            return None
        d = d[k]
    return d


def _physics(sums: list[dict]) -> str:
    conds = ["1", "9"]
    header = ["predictor", "N"] + [f"{m} @{c}" for c in conds for m in ("PSNR", "SSIM", "IoU")]
    rows = []
    for s in sums:
        row = [_label(s), s["n"]]
        for c in conds:
            o = _v(s, "overall", c) or {}
            row += [fmt(_v(o, "psnr", "value"), 2), fmt(_v(o, "ssim", "value")), fmt(_v(o, "iou", "value"))]
        rows.append(row)
    for name, figs in COSMOS_PUBLISHED:
        row = [name, "100"]
        for c in conds:
            p = figs.get(c, (None, None, None))
            row += [fmt(p[0], 2), fmt(p[1], 2), fmt(p[2])]
        rows.append(row)
    text = "## Physics alignment (Cosmos 1 protocol)\n\n" + markdown_table(header, rows)
    # per scenario, object IoU with 9 frames: the model must beat copy_last on every one
    scen = sums[0]["scenarios"]
    rows = [[_label(s)] + [fmt(_v(s, "per_scenario", "9", sc, "iou", "value")) for sc in scen] for s in sums]
    text += "\nObject IoU per scenario, 9 context frames:\n\n" + markdown_table(["predictor"] + scen, rows)
    seg = [_v(s, "overall", c, "segmenter_gt_iou", "value") for s in sums for c in conds]
    seg = [x for x in seg if x is not None]
    if seg:
        text += (f"\nSegmenter validation (segmenting the simulator's own future frames): object IoU "
                 f"{fmt(min(seg))}–{fmt(max(seg))} across runs.\n")
    return text


def _physics_iq(sums: list[dict]) -> str:
    header = ["predictor", "N", "score @1", "score @9"]
    rows = [[_label(s), s["n"], fmt(_v(s, "overall", "1", "score", "value"), 1),
             fmt(_v(s, "overall", "9", "score", "value"), 1)] for s in sums]
    rows += [["Physics-IQ best (published)", "", "62.6", ""], ["Sora 2 (published)", "", "42.3", ""],
             ["Stable Video Diffusion (published)", "", "14.8", ""]]
    return ("## Physics-IQ-style score\n\n" + markdown_table(header, rows)
            + "\nkinema normalises by a second take of the simulated scene (nudged initial velocities); Physics-IQ's "
              "published scores normalise by a second real recording (single-condition protocol of its own).\n")


def _actions(sums: list[dict]) -> str:
    text = "## Action-conditioned prediction\n\n"
    fw = [s for s in sums if s.get("forward")]
    if fw:
        worlds = fw[0]["scenarios"]
        header = ["predictor"] + [f"{w} PSNR true / shuffled" for w in worlds]
        rows = [[_label(s)] + [f"{fmt(_v(s, 'forward', w, 'psnr_true', 'value'), 2)} / "
                               f"{fmt(_v(s, 'forward', w, 'psnr_shuffled', 'value'), 2)}" for w in worlds] for s in fw]
        text += "Forward dynamics (PSNR dB with the true / a shuffled action sequence):\n\n" + markdown_table(header, rows)
    inv = [s for s in sums if s.get("inverse")]
    if inv:
        rows = []
        for s in inv:
            for w, groups in s["inverse"].items():
                rows.append([_label(s), w] + [fmt(_v(groups, g, "ratio", "value"), 3) if g in groups else "–"
                                              for g in ("translation", "rotation", "gripper")])
        text += ("\nInverse dynamics, MSE relative to the mean-action baseline (below 1 beats it):\n\n"
                 + markdown_table(["predictor", "world", "translation", "rotation", "gripper"], rows))
    return text


def _closed_loop(sums: list[dict]) -> str:
    text = "## Closed loop\n\n"
    # the real success rates do not depend on the world model: take them from the first run
    s0 = sums[0]
    rows = [[task] + [fmt(_v(s0, "rates", task, pol, "real", "value"), 2) for pol in s0["policies"]]
            for task in s0["tasks"]]
    text += (f"Success in the real simulator (N={s0['n']} seeds per task):\n\n"
             + markdown_table(["task"] + s0["policies"], rows))
    rows = [[_label(s), s["n"], fmt(_v(s, "pearson_r", "value")), fmt(_v(s, "spearman_rho", "value"))] for s in sums]
    rows.append(["IRASim (published)", "", "0.99", ""])
    text += ("\nPolicy evaluation inside the world model: imagined vs real success rates across (task, policy):\n\n"
             + markdown_table(["world model", "N", "Pearson r", "Spearman rho"], rows))
    return text


def _plausibility(sums: list[dict]) -> str:
    header = ["judge", "N per world", "ROC AUC", "teleport", "pass_through", "falls_upward", "colour_change"]
    rows = [[_label(s), s["n"], fmt(_v(s, "auc", "value"))]
            + [fmt(_v(s, "per_violation", v, "value")) for v in ("teleport", "pass_through", "falls_upward",
                                                                 "colour_change")] for s in sums]
    return "## Plausibility (implausible twins)\n\n" + markdown_table(header, rows)


def _text2video(sums: list[dict]) -> str:
    from kinema.model.evaluate import TABLE_HEADER, table_rows

    rows = [row for s in sums for row in table_rows(s, label=_label(s))[:1]]
    rows += table_rows(max(sums, key=lambda s: s["n"]))[-1:]  # the simulator's frames of the most clips
    return ("## Text-to-video (named colours and objects appear?)\n\n"
            "Held-out captions of the passive worlds; ± s.e. over clips, named − unnamed paired per clip.\n\n"
            + markdown_table(TABLE_HEADER, rows))


SECTIONS = {"physics": _physics, "physics-iq": _physics_iq, "actions": _actions, "closed-loop": _closed_loop,
            "plausibility": _plausibility, "text2video": _text2video}


def write_report(out) -> Path:
    found = load_summaries(out)
    if not found:
        raise ValueError(f"--out {out}: no benchmark results (no */*/summary.json) to report")
    parts = ["# kinema evaluation report\n", DATA_NOTE + "\n",
             "Rows marked (oracle) read ground truth a world model never sees (the simulator itself, its second take, "
             "ground-truth masks or states): they bound what is possible, they are not competitors.\n"]
    for name, fn in SECTIONS.items():
        if name in found:
            parts.append(fn(found[name]))
    path = Path(out) / "report.md"
    path.write_text("\n".join(parts))
    return path
