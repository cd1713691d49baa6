"""What every benchmark does the same way: turn an episode into a request, name the run folder, check N.

Legend: T episode frames, Tc context frames, Tf predicted frames, A action dims.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from kinema.data.episode import Episode
from kinema.eval.predictor import OracleInfo, PredictionRequest


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a whole number >= 1, got {value!r}")
    return int(value)


def check_size(size: int) -> int:
    """Frame height and width: at least 16 pixels, so every camera shows something and SSIM's window fits."""
    if not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"--size: expected a whole number of pixels >= 16, got {size!r}")
    return int(size)


def check_subset(name: str, given, allowed) -> list[str]:
    given = list(given)
    bad = [g for g in given if g not in allowed]
    if bad or not given:
        raise ValueError(f"{name}: expected a non-empty list from {', '.join(allowed)}; got {', '.join(given) or 'nothing'}")
    return given


def action_timing(ep: Episode) -> str:
    """'at' for camera motion (an action is the pose at its frame), 'after' for the tabletop."""
    return "at" if ep.info.get("family") == "camera" else "after"


def request_from_episode(ep: Episode, cam: str, *, context: int, future: int, start: int = 0,
                         actions: np.ndarray | None = None, with_actions: bool = True) -> PredictionRequest:
    """The request for frames [start + context, start + context + future) of `cam`, given the frames before.

    actions: the clip's actions [context + future, A] to condition on (default: the episode's own);
    with_actions=False sends none (passive scenes, or a task without them).
    """
    T = context + future
    end = start + T
    if start < 0 or context < 1 or end > ep.length:
        raise ValueError(f"episode of {ep.length} frames has no clip [{start}, {end}) with {context} context frame(s)")
    clip_actions = None
    if with_actions and ep.action.shape[1] > 0:
        clip_actions = ep.action[start:end] if actions is None else np.asarray(actions, np.float32)
    sl = slice(start, start + context)
    return PredictionRequest(
        context=ep.frames[cam][sl],
        num_frames=future,
        fps=ep.fps,
        camera=cam,
        actions=clip_actions,
        action_names=tuple(ep.info.get("action_names", ())),
        action_timing=action_timing(ep),
        # the task string (instruction, or the scenario's description), never the caption: it tells the outcome
        prompt=ep.task,
        intrinsics=ep.intrinsics[cam][start:end],
        extrinsics=ep.extrinsics[cam][start:end],
        oracle=OracleInfo(
            scenario=ep.scenario, seed=ep.seed, size=ep.frames[cam].shape[1], policy=ep.info.get("policy"),
            context_masks=ep.masks[cam][sl], context_objects=ep.objects[sl], objects_info=ep.objects_info,
            context_state=ep.state[sl], start=start, prefix_actions=ep.action[:start],
        ),
    )


def run_dir(out, benchmark: str, predictor_name: str) -> Path:
    """<out>/<benchmark>/<predictor name made safe for a path>."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "-", predictor_name).strip("-") or "predictor"
    return Path(out) / benchmark / safe


def describe_predictor(p) -> dict:
    """Name, kind and (for a model with them) its sampling settings: a rerun that samples otherwise is refused
    (results.check_run) rather than resumed on top of rollouts made another way."""
    d = {"name": p.name, "oracle": bool(getattr(p, "uses_oracle", False)), "class": type(p).__name__}
    if getattr(p, "sampling", None) is not None:
        d["sampling"] = p.sampling
    return d


@contextmanager
def one_thread():
    """Run the metrics on one thread. They are small float64 ops: on a busy 2-core machine, two threads
    fighting over the cores made SSIM ten times slower (0.55 s against 0.05 s for 24 frames at 64x64)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
