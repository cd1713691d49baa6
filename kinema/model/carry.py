"""Carry the last given frame's detail into the generated frames.

The model predicts latents, and every frame it shows is drawn by the tokenizer's decoder, whose round trip loses
detail (the shipped CV tokenizer: about 28 dB). For the given frames that loss is known exactly: the given pixels
minus their decoded round trip. Adding the last given frame's loss back to every generated frame restores the
detail of whatever the future keeps of it (a static scene, an object that has not moved yet), as a video codec's
predicted frames add their residual to the decoded reference:

    e     = x_last - x̂_last                         (the round trip's error on the last given frame)
    out_t = clip(x̂_t + g_t * e, 0, 255)             (x̂_t: decoded generated frame t)

with g_t = 1 everywhere. A gate g_t = clip(1 - max_channel |x̂_t - x̂_last| / gate, 0, 1), closing where the
generated frame has changed, was measured too: every width tried scored below no gate on object IoU on the dev
rollouts (BENCHMARKS.md, "Carrying the given frame's detail"; benchmarks/prereg/carry.md), so the pipeline uses none.
Moving e along the optical flow of each generated frame, or keeping it off what moved in the given frames, lost
object IoU as well ("Moving the carried detail with the motion"; those variants live in scripts/carry_dev.py).
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_CARRY = True  # the pipeline's default in modes with given frames and a future (benchmarks/prereg/carry.md)
DEFAULT_GATE = math.inf  # pixel levels of change that close the gate (inf: no gate)


def carry_default(embodiment) -> bool:
    """Carry's default for a clip whose actions come from `embodiment` (None: no actions): on, except where the
    actions are the view's own pose (timing "at": the camera moves), so the error image, fixed in the last given
    frame's coordinates, would land beside what it belongs to (camera motion: 17.99 dB without, 17.50 with)."""
    return DEFAULT_CARRY and (embodiment is None or embodiment.timing != "at")


def carry_detail(frames: np.ndarray, given_last: np.ndarray, decoded_last: np.ndarray,
                 gate: float = DEFAULT_GATE) -> np.ndarray:
    """frames: uint8 [T, H, W, 3] decoded generated frames; given_last / decoded_last: uint8 [H, W, 3] the last
    given frame and its decoded round trip; gate: pixel levels (0-255) of change that close the gate (inf: none;
    None: DEFAULT_GATE) -> uint8 [T, H, W, 3]."""
    x = frames.astype(np.float32)
    ref = decoded_last.astype(np.float32)
    err = given_last.astype(np.float32) - ref  # [H, W, 3]
    gate = DEFAULT_GATE if gate is None else gate
    if math.isinf(gate):
        return np.clip(np.rint(x + err), 0, 255).astype(np.uint8)
    g = np.clip(1.0 - np.abs(x - ref).max(-1, keepdims=True) / gate, 0.0, 1.0)  # [T, H, W, 1]
    return np.clip(np.rint(x + g * err), 0, 255).astype(np.uint8)


def check_gate(gate) -> None:
    if gate is not None and (isinstance(gate, bool) or not isinstance(gate, (int, float)) or not gate > 0):
        raise ValueError(f"carry_gate: expected pixel levels > 0 (inf: no gate), got {gate!r}")
