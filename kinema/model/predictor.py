"""The world model behind the evaluation interface (kinema.eval.predictor).

`kinema eval physics --model checkpoints/world-model-small` loads it through
the loader registered in kinema/model/__init__.py. Prediction is forward
dynamics when the request carries actions, else video-to-video from the
prompt (which starts from the last given frame: pipeline.DEFAULT_STRENGTH);
clips longer than the model's 33-frame window roll out in chunks.
Inverse dynamics reads the actions back from a whole clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinema.model.calibration import ActionCalibration
from kinema.model.pipeline import Pipeline

DEFAULT_STEPS = 10  # benchmarks/generate.py: the fewest steps within 0.5 dB of 35 (see BENCHMARKS.md)
# Inverse dynamics is scored by squared error, whose best point estimate is the posterior mean, not a posterior
# sample (which has twice its expected squared error). One denoising step from pure noise returns the model's
# x0 prediction, its estimate of that mean; averaging it over noise draws refines it (BENCHMARKS.md).
INVERSE_STEPS, INVERSE_SAMPLES = 1, 16  # 16 not 4: BENCHMARKS.md, "Sixteen draws"


class WorldModelPredictor:
    uses_oracle = False

    def __init__(self, pipeline: Pipeline, *, num_steps: int = DEFAULT_STEPS, sampler: str = "dpmpp_2m",
                 seed: int = 0, action_guidance: float = 1.0, inverse_steps: int = INVERSE_STEPS,
                 inverse_samples: int = INVERSE_SAMPLES, strength: float | None = None, carry: bool | None = None,
                 carry_gate: float | None = None, name: str | None = None, calibration: ActionCalibration | None = None):
        self.pipeline, self.num_steps, self.sampler, self.seed = pipeline, num_steps, sampler, seed
        self.calibration = calibration  # applied to inverse dynamics' estimate (kinema.model.calibration)
        self.inverse_steps, self.inverse_samples = int(inverse_steps), int(inverse_samples)
        self.action_guidance = float(action_guidance)
        self.strength = None if strength is None else float(strength)  # None: each mode's default (pipeline)
        self.carry = None if carry is None else bool(carry)  # None: the pipeline's default (kinema.model.carry)
        self.carry_gate = None if carry_gate is None else float(carry_gate)  # None: kinema.model.carry's default
        # runs with other sampling options write to their own results folder
        tags = ("_ag%g" % self.action_guidance if self.action_guidance != 1.0 else "") + \
               ("_s%g" % self.strength if self.strength is not None else "") + \
               ({True: "_carry", False: "_nocarry", None: ""}[self.carry]) + \
               ("_g%g" % self.carry_gate if self.carry_gate is not None else "")
        self.name = name or "world_model" + tags

    @property
    def sampling(self) -> dict:
        """What decides its rollouts besides the weights (eval run.json): a run made otherwise is not resumed."""
        from kinema.model.carry import DEFAULT_CARRY
        from kinema.model.pipeline import DEFAULT_STRENGTH

        out = dict(num_steps=self.num_steps, sampler=self.sampler, action_guidance=self.action_guidance,
                   strength=self.strength if self.strength is not None else dict(DEFAULT_STRENGTH),
                   inverse_steps=self.inverse_steps, inverse_samples=self.inverse_samples,
                   calibration=None if self.calibration is None else
                   {"scale": self.calibration.scale, "offset": self.calibration.offset})
        carry = self.carry if self.carry is not None else DEFAULT_CARRY
        if carry:  # recorded only when on, so runs made before it existed (off) still resume
            out["carry"] = True
            if self.carry_gate is not None:
                out["carry_gate"] = self.carry_gate
        return out

    def _kw(self, req) -> dict:
        return dict(prompt=req.prompt or "", fps=req.fps, action_names=tuple(req.action_names),
                    num_steps=self.num_steps, sampler=self.sampler, seed=self.seed)

    def predict(self, req) -> np.ndarray:
        actions = req.actions if req.actions is not None and req.actions.shape[1] > 0 else None
        return self.pipeline.rollout(req.context, int(req.num_frames), actions=actions, given=req.given,
                                     action_guidance=self.action_guidance, strength=self.strength, carry=self.carry,
                                     carry_gate=self.carry_gate, **self._kw(req))

    def infer_actions(self, req) -> np.ndarray:
        """The whole clip [T, H, W, 3] -> [T - 1, A]: the mean of `inverse_samples` draws, recalibrated where the
        checkpoint ships a calibration for the embodiment."""
        actions = self.action_draws(req, self.inverse_samples).mean(0)
        if self.calibration is not None:
            actions = self.calibration.apply(self.embodiment(req), actions)
        return actions

    def embodiment(self, req) -> str:
        e = self.pipeline._domain(None, tuple(req.action_names), None, req.action_timing)
        return self.pipeline.config.embodiments[e].name

    def action_draws(self, req, draws: int) -> np.ndarray:
        """Inverse dynamics' one-step draws (noise seeds seed .. seed + draws - 1) -> [draws, T - 1, A]; a clip
        that is not 1 + 4k frames is padded with its last frame and the extra rows dropped."""
        clip = req.context
        T = len(clip)
        tc = self.pipeline.config.temporal_compression
        Tp = 1 + tc * -(-(T - 1) // tc)
        if Tp > T:
            clip = np.concatenate([clip, np.repeat(clip[-1:], Tp - T, 0)])
        kw = dict(self._kw(req), num_steps=self.inverse_steps)
        return self.pipeline.action_draws(clip, draws=draws, domain_name=self.embodiment(req), **kw)[:, : T - 1]


def load_predictor(path: Path, *, device: str = "auto", num_steps: int = DEFAULT_STEPS, calibrated: bool = True,
                   **options):
    """calibrated=False ignores the checkpoint's action calibration (to measure what it changes)."""
    calibration = ActionCalibration.beside(path, "inverse_dynamics") if calibrated else None
    return WorldModelPredictor(Pipeline.from_pretrained(path, device=device), num_steps=num_steps,
                               calibration=calibration, **options)
