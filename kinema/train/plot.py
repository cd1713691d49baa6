"""The loss curve of a run, drawn from its log.jsonl into a PNG.

Why: a person judges a training run faster from a curve than from numbers.
Drawn with matplotlib's Agg canvas directly (no pyplot), so it never touches
a GUI backend or global state, and written under a temporary name then
renamed, so a viewer never reads half a PNG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    """The records of a log.jsonl; a torn last line (a killed writer) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss(log_path: Path, png_path: Path, title: str = "") -> Path | None:
    """Training loss (and any eval/*loss* metric) against step; log-y when all values are positive."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log_path)
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        for key, value in r.items():
            if key == "loss" or (key.startswith("eval/") and "loss" in key):
                steps, values = curves.setdefault(key, ([], []))
                steps.append(r["step"])
                values.append(value)
    if not curves:
        return None

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for key, (steps, values) in curves.items():
        style = "-" if key == "loss" else "o-"
        ax.plot(steps, values, style, label=key, linewidth=1.2, markersize=3)
    if all(v > 0 for _, values in curves.values() for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()

    png_path = Path(png_path)
    tmp = png_path.with_name(f".tmp-{png_path.name}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, png_path)
    return png_path
