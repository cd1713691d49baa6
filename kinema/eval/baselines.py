"""Baselines every world model must beat: they implement the predictor interface with no learning.

Legend: Tc context frames, Tf predicted frames, T clip frames, H height,
W width, A action dims, S state dims.

Future frames (`predict`):
  copy_last    the last context frame, repeated: "nothing moves from now on".
  zero_motion  the mean of the context frames, repeated (Physics-IQ's
               zero-motion baseline); equals copy_last with one context frame.
  linear       each moving object keeps its image velocity: its centroid's
               velocity is fitted (least squares) over the last LINEAR_FIT_FRAMES
               context frames, and its pixels from the last frame are pasted
               along that line over a background from which the moving
               objects are removed (each hidden pixel taken from the latest
               context frame that shows it, the rest filled in from the
               outside by averaging known neighbours, layer by layer). It reads the
               ground-truth masks of the context frames (what a perfect
               tracker would give), so it is marked as using oracle info.
               With one context frame there is no velocity: it equals copy_last.

Actions (`infer_actions`, inverse dynamics), see `inverse_dynamics_targets`:
  mean_action  the mean action of training episodes (seeds disjoint from the
               evaluation seeds) of the same scenario, for every row.
  state_diff   an oracle that reads the recorded observation.state: the
               tabletop action from differences of the measured gripper pose
               (it lags the commanded target a little), the camera pose as
               recorded (exact).
"""

from __future__ import annotations

import numpy as np

from kinema.eval.predictor import PredictionRequest, inverse_dynamics_targets
from kinema.eval.segment import moving_ids
from kinema.worlds.tabletop import rot6d, rot_from_6d

LINEAR_FIT_FRAMES = 4  # context frames the velocity is fitted on
# training episodes the mean action is taken over: 16 left it noisy enough that a constant from more episodes beat
# it by 3% on the arm's rotation and 14% on the camera (BENCHMARKS.md, "Inverse dynamics recalibrated")
MEAN_ACTION_EPISODES = 256
TRAIN_SEED = 0  # run seed of the training episodes (evaluation uses kinema.eval.data.EVAL_SEED)


class CopyLastFrame:
    name = "copy_last"
    uses_oracle = False

    def predict(self, req: PredictionRequest) -> np.ndarray:
        return np.repeat(req.context[-1:], req.num_frames, axis=0)


class ZeroMotion:
    name = "zero_motion"
    uses_oracle = False

    def predict(self, req: PredictionRequest) -> np.ndarray:
        mean = np.round(req.context.astype(np.float64).mean(axis=0)).astype(np.uint8)
        return np.repeat(mean[None], req.num_frames, axis=0)


def fill_holes(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """image uint8 [H, W, 3] with the pixels where hole [H, W] is True filled from outside in: each pass gives
    every hole pixel next to known ones the mean of its known 8-neighbours (exact on a uniform background)."""
    out = image.astype(np.float64)
    hole = hole.copy()
    H, W = hole.shape
    while hole.any():
        known = ~hole
        total, count = np.zeros_like(out), np.zeros((H, W))
        pad_v, pad_k = np.pad(out, ((1, 1), (1, 1), (0, 0))), np.pad(known, 1)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    k = pad_k[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W]
                    total += pad_v[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] * k[..., None]
                    count += k
        ring = hole & (count > 0)
        if not ring.any():
            break  # nothing known at all: leave the image as it is
        out[ring] = total[ring] / count[ring][:, None]
        hole &= ~ring
    return np.round(out).astype(np.uint8)


def _centroid(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    return np.array([ys.mean(), xs.mean()]) if len(ys) else None


class LinearObjectMotion:
    name = "linear"
    uses_oracle = True  # reads the context frames' ground-truth masks

    def predict(self, req: PredictionRequest) -> np.ndarray:
        if req.oracle is None:
            raise ValueError("predictor 'linear' needs the context frames' object masks (request.oracle)")
        ctx, masks = req.context, req.oracle.context_masks  # [Tc, H, W, 3], [Tc, H, W]
        Tc, H, W, _ = ctx.shape
        last, last_mask = ctx[-1], masks[-1]
        movers = moving_ids(req.oracle.objects_info)
        covered = np.isin(last_mask, movers)  # [H, W] hidden behind a moving object in the last frame
        background = last.copy()
        for t in range(Tc - 2, -1, -1):  # an earlier frame may show what the object now hides
            shown = covered & ~np.isin(masks[t], movers)
            background[shown] = ctx[t][shown]
            covered &= ~shown
        background = fill_holes(background, covered)

        sprites = []  # (rows, cols, colours [n, 3], velocity [2] in pixels per frame)
        for k in movers:
            ys, xs = np.nonzero(last_mask == k)
            if not len(ys):
                continue
            track = [(t, c) for t in range(max(0, Tc - LINEAR_FIT_FRAMES), Tc)
                     if (c := _centroid(masks[t] == k)) is not None]
            v = np.zeros(2)
            if len(track) >= 2:
                t = np.array([t for t, _ in track], np.float64)
                c = np.stack([c for _, c in track])  # [n, 2]
                v = np.polyfit(t, c, 1)[0]  # slope of row and column against time
            sprites.append((ys, xs, last[ys, xs], v))

        out = np.repeat(background[None], req.num_frames, axis=0)
        for j in range(req.num_frames):
            for ys, xs, colours, v in sprites:
                dy, dx = np.round(v * (j + 1)).astype(int)
                y2, x2 = ys + dy, xs + dx
                inside = (y2 >= 0) & (y2 < H) & (x2 >= 0) & (x2 < W)
                out[j, y2[inside], x2[inside]] = colours[inside]
        return out


# ---------------------------------------------------------------- inverse dynamics


class MeanAction:
    name = "mean_action"
    uses_oracle = False  # reads only the scenario's name from request.oracle, to pick its training mean

    def __init__(self, episodes: int = MEAN_ACTION_EPISODES):
        if episodes < 1:
            raise ValueError(f"mean_action: episodes must be at least 1, got {episodes}")
        self.episodes = int(episodes)
        self._means: dict[tuple[str, str], np.ndarray] = {}

    def mean(self, scenario: str, timing: str) -> np.ndarray:
        """float32 [A]: the mean inverse-dynamics target over the training episodes of `scenario`."""
        if (scenario, timing) not in self._means:
            from kinema.eval.simulator import simulate
            from kinema.worlds.generate import episode_seed

            rows = [inverse_dynamics_targets(simulate(scenario, episode_seed(TRAIN_SEED, i), render=False).action, timing)
                    for i in range(self.episodes)]
            self._means[(scenario, timing)] = np.concatenate(rows).mean(axis=0).astype(np.float32)
        return self._means[(scenario, timing)]

    def infer_actions(self, req: PredictionRequest) -> np.ndarray:
        if req.oracle is None:
            raise ValueError("predictor 'mean_action' needs the scenario name (request.oracle.scenario)")
        m = self.mean(req.oracle.scenario, req.action_timing)
        return np.repeat(m[None], len(req.context) - 1, axis=0)


class StateDifferenceActions:
    name = "state_diff"
    uses_oracle = True  # reads the recorded observation.state

    def infer_actions(self, req: PredictionRequest) -> np.ndarray:
        o = req.oracle
        if o is None or o.context_state is None:
            raise ValueError("predictor 'state_diff' needs the recorded observation.state (request.oracle.context_state)")
        s = np.asarray(o.context_state, np.float64)  # [T, S]
        if req.action_timing == "at":  # camera motion: the state is the pose, which is the action
            return s[1:].astype(np.float32)
        # tabletop: state = TCP position (3), TCP rotation 6D (6), gripper opening (1)
        rows = []
        for t in range(len(s) - 1):
            R0, R1 = rot_from_6d(s[t, 3:9]), rot_from_6d(s[t + 1, 3:9])
            rows.append(np.concatenate([s[t + 1, :3] - s[t, :3], rot6d(R1 @ R0.T), [1.0 - s[t + 1, 9]]]))
        return np.asarray(rows, np.float32)
