"""The world model's policy mode acting in closed loop (kinema.eval.policy's interface).

Legend: Tc given frames (1 + 4j <= CONTEXT), T = WINDOW clip frames, A action dims (10 on the tabletop).

`kinema eval closed-loop --policies checkpoints/world-model-small` loads it
through the loader registered in kinema/model/__init__.py. It looks through one
camera. Every REPLAN frames it gives the model what it has seen, the last Tc
frames and the Tc - 1 actions it took between them, with the task's
instruction, and the model's policy mode fills in the rest of a T-frame window:
future frames and the actions that lead to them. The policy acts the first
REPLAN of those actions, then looks again (receding horizon). The actions are a
point estimate, the mean of DRAWS one-step samples, as inverse dynamics reads
them (kinema.model.predictor): no frame is decoded. Where the checkpoint ships a
policy calibration (kinema.model.calibration), the chunk goes through it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from kinema.model.calibration import CALIBRATION_FILE, ActionCalibration
from kinema.model.data import FAMILY_EMBODIMENT
from kinema.model.pipeline import Pipeline
from kinema.model.predictor import INVERSE_SAMPLES, INVERSE_STEPS

CONTEXT = 9  # frames given at most (3 latent frames, as forward dynamics is evaluated)
WINDOW = 33  # the clip the model trained on
REPLAN = 8  # actions acted from each plan before looking again


class WorldModelPolicy:
    privileged = False
    needs_frames = True

    def __init__(self, pipeline: Pipeline, *, camera: str | None = None, context: int = CONTEXT,
                 replan: int = REPLAN, draws: int = INVERSE_SAMPLES, num_steps: int = INVERSE_STEPS,
                 fps: float = 16.0, name: str | None = None, calibration: ActionCalibration | None = None,
                 plan_from: str = "actions", frame_steps: int = 10,
                 inverse_calibration: ActionCalibration | None = None):
        tc = pipeline.config.temporal_compression
        if context < 1 or (context - 1) % tc or context >= WINDOW:
            raise ValueError(f"context: expected 1 + {tc}j given frames below {WINDOW}, got {context}")
        if not 1 <= replan <= WINDOW - context:
            raise ValueError(f"replan: expected 1 to {WINDOW - context} actions per plan (the window left after "
                             f"{context} given frames), got {replan}")
        if draws < 1 or num_steps < 1:
            raise ValueError(f"draws and num_steps: expected at least 1, got {draws} and {num_steps}")
        if plan_from not in ("actions", "frames"):
            raise ValueError(f"plan_from: expected 'actions' (the policy mode's action estimate) or 'frames' "
                             f"(inverse dynamics on the frames it imagines), got {plan_from!r}")
        self.pipeline, self.camera, self.context, self.replan = pipeline, camera, int(context), int(replan)
        self.draws, self.num_steps, self.fps = int(draws), int(num_steps), float(fps)
        self.domain = FAMILY_EMBODIMENT["tabletop"]
        self.dim = pipeline.config.embodiments[pipeline._domain(self.domain, (), None)].dim
        self.name = name or "world_model_policy"
        self.calibration = calibration
        self.plan_from, self.frame_steps = plan_from, int(frame_steps)
        self.inverse_calibration = inverse_calibration  # plan_from="frames": inverse dynamics' line
        self.plans = 0
        self.reset(0, "")

    def reset(self, seed: int, instruction: str) -> None:
        self._seed = int(seed) * 1000  # each plan its own noise, the same on every run of this seed
        self._seen: list[np.ndarray] = []  # uint8 [H, W, 3] per frame seen
        self._done: list[np.ndarray] = []  # f32 [A] per action taken
        self._queue: list[np.ndarray] = []

    def _frame(self, obs) -> np.ndarray:
        if not obs.frames:
            raise ValueError(f"policy {self.name!r} looks at a camera: the observation carries no frames")
        cam = self.camera or next(iter(obs.frames))
        if cam not in obs.frames:
            raise ValueError(f"policy {self.name!r}: camera {cam!r} not among the observation's "
                             f"{', '.join(obs.frames)}")
        return obs.frames[cam]

    def plan(self, frames: np.ndarray, history: np.ndarray, instruction: str, seed: int) -> np.ndarray:
        """frames uint8 [Tc, H, W, 3] + the actions taken between them f32 [Tc - 1, A] -> the next actions
        f32 [T - Tc, A], the first acted after frame Tc - 1."""
        Tc = len(frames)
        actions = np.zeros((WINDOW, self.dim), np.float32)
        actions[: Tc - 1] = history
        kw = dict(domain_name=self.domain, prompt=instruction, fps=self.fps)
        if self.plan_from == "frames":  # imagine the window, then read its actions back (inverse dynamics)
            clip = self.pipeline.run("policy", seed=seed, num_frames=WINDOW, context=frames, actions=actions,
                                     num_steps=self.frame_steps, **kw)["frames"]
            out = self.pipeline.infer_actions(clip, draws=self.draws, seed=seed, num_steps=self.num_steps, **kw)
            if self.inverse_calibration is not None:
                out = self.inverse_calibration.apply(self.domain, out)
        else:
            out = self.pipeline.infer_actions(frames, draws=self.draws, seed=seed, num_steps=self.num_steps,
                                              mode="policy", num_frames=WINDOW, actions=actions, **kw)
        self.plans += 1
        if self.calibration is not None:
            out = self.calibration.apply(self.domain, out)
        return out[Tc - 1 :]

    def act(self, obs) -> np.ndarray:
        if obs.t != len(self._seen):
            raise ValueError(f"policy {self.name!r}: expected frame {len(self._seen)} next, got frame {obs.t} "
                             "(reset between episodes)")
        self._seen.append(self._frame(obs))
        if not self._queue:
            tc = self.pipeline.config.temporal_compression
            Tc = 1 + tc * ((min(len(self._seen), self.context) - 1) // tc)
            history = np.zeros((0, self.dim), np.float32) if Tc == 1 else np.stack(self._done[-(Tc - 1):])
            chunk = self.plan(np.stack(self._seen[-Tc:]), history, obs.instruction, self._seed + len(self._seen))
            self._queue = list(chunk[: self.replan])
        a = np.asarray(self._queue.pop(0), np.float32)
        self._done.append(a)
        return a


def load_policy(path: Path, *, device: str = "auto", name: str | None = None, calibrated: bool = True,
                **options) -> WorldModelPolicy:
    """The checkpoint folder as a policy, named after the folder and its weights' (and policy calibration's)
    digest (closed-loop episodes are cached by policy name: other weights must not find these) and any option not
    left at its default."""
    path = Path(path)
    calibration = ActionCalibration.beside(path, "policy") if calibrated else None
    if name is None:
        h = hashlib.sha1((path / "model.safetensors").read_bytes())
        if calibration is not None:
            h.update((path / CALIBRATION_FILE.format(mode="policy")).read_bytes())
        name = f"{path.name}@{h.hexdigest()[:8]}" + "".join(f"_{k}{v}" for k, v in sorted(options.items()))
    inverse = ActionCalibration.beside(path, "inverse_dynamics") if calibrated else None
    return WorldModelPolicy(Pipeline.from_pretrained(path, device=device), name=name, calibration=calibration,
                            inverse_calibration=inverse, **options)
