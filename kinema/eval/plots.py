"""Pictures of a benchmark: per-frame curves by scenario, contact sheets of the best and worst rollouts.

Legend: T frames, H height, W width.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kinema.worlds.preview import contact_sheet, write_png


def per_frame_curves(path, curves: dict[str, dict[str, tuple[list[int], list[float]]]], ylabel: str,
                     title: str) -> Path:
    """curves: scenario -> line label -> (frame indices, mean value per frame); one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(curves)
    cols = min(4, len(names)) or 1
    rows = math.ceil(len(names) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        for label, (x, y) in curves[name].items():
            ax.plot(x, y, marker=".", markersize=3, linewidth=1.2, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.93, 0.95))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def comparison_sheet(path, items: list[tuple[str, np.ndarray, np.ndarray]], columns: int = 8,
                     names: tuple[str, str] = ("GT", "pred")) -> Path:
    """items: (short label, ground truth uint8 [T, H, W, 3], context + prediction uint8 [T, H, W, 3]);
    two rows each (named `names`), frames labelled by their index in the clip."""
    rows = []
    for label, gt, pred in items:
        rows.append((f"{label} {names[0]}", gt))
        rows.append((f"{label} {names[1]}", pred))
    return write_png(path, contact_sheet(rows, columns=columns, scale=2))
