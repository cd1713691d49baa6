"""An affine recalibration of the world model's action estimates, one per mode and embodiment.

The estimate (predictor.WorldModelPredictor.infer_actions) is the mean of K one-step x0 predictions: the model's
guess at the posterior mean. Where the frames say little (the arm's rotation: the experts hardly turn the hand)
that guess is noisy, and the squared-error-optimal answer pulls it toward what the action usually is. Per action
dimension d, the calibrated answer is `scale[d] * estimate[d] + offset[d]`, the least-squares line of the true
actions on the estimates over clips of episodes the model never trained on and no evaluation uses
(CALIBRATION_SEED). A dimension with no signal gets scale 0 and the calibration set's mean; one the model reads
well keeps scale near 1. One line serves every task of an embodiment, so a dimension whose tasks use it
differently can lose on one task what it gains on another (the arm's gripper: push holds it still): such groups
are left raw (scale 1, offset 0). `scripts/inverse_draws.py fit` writes inverse dynamics' file; BENCHMARKS.md,
"Inverse dynamics recalibrated".

Legend: N rows (clip frames pooled over clips), A action dims.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kinema.train.checkpoint import write_json

CALIBRATION_FILE = "{mode}_calibration.json"  # beside a world model's model.safetensors; optional
CALIBRATION_SEED = 101  # run seed of the calibration episodes: no training recipe or evaluation draws from it


@dataclass
class ActionCalibration:
    scale: dict[str, list[float]]  # embodiment name -> [A]
    offset: dict[str, list[float]]  # embodiment name -> [A]
    fit: dict = field(default_factory=dict)  # provenance: command, seeds, clips, draws

    def __post_init__(self):
        if set(self.scale) != set(self.offset):
            raise ValueError(f"action calibration: scale and offset name different embodiments "
                             f"({sorted(self.scale)} vs {sorted(self.offset)})")
        for name in self.scale:
            s, o = np.asarray(self.scale[name], float), np.asarray(self.offset[name], float)
            if s.ndim != 1 or s.shape != o.shape or not (np.isfinite(s).all() and np.isfinite(o).all()):
                raise ValueError(f"action calibration {name!r}: expected finite scale and offset of one equal "
                                 f"length, got shapes {s.shape} and {o.shape}")

    @staticmethod
    def line(estimates: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension least squares targets ~ scale * estimates + offset; [N, A] each -> ([A], [A])."""
        x, y = np.asarray(estimates, np.float64), np.asarray(targets, np.float64)
        if x.ndim != 2 or x.shape != y.shape or len(x) < 2:
            raise ValueError(f"calibration fit: expected estimates and targets of one shape [N >= 2, A], "
                             f"got {x.shape} and {y.shape}")
        xc, yc = x - x.mean(0), y - y.mean(0)
        var = (xc ** 2).mean(0)
        scale = np.where(var > 1e-12, (xc * yc).mean(0) / np.maximum(var, 1e-12), 0.0)
        return scale, y.mean(0) - scale * x.mean(0)

    def apply(self, embodiment: str, actions: np.ndarray) -> np.ndarray:
        """[..., A] estimates -> calibrated, f32; an embodiment the file does not name passes unchanged."""
        if embodiment not in self.scale:
            return actions
        s, o = np.asarray(self.scale[embodiment]), np.asarray(self.offset[embodiment])
        if actions.shape[-1] != len(s):
            raise ValueError(f"action calibration {embodiment!r}: fit on {len(s)} action dims, got "
                             f"{actions.shape[-1]}")
        return (actions * s + o).astype(np.float32)

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "ActionCalibration":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(scale=raw["scale"], offset=raw["offset"], fit=raw.get("fit", {}))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: expected an action calibration (JSON with scale and offset per "
                             f"embodiment), could not read it ({e!r})") from None

    @classmethod
    def beside(cls, checkpoint: Path, mode: str) -> "ActionCalibration | None":
        """The calibration of `mode` shipped in a checkpoint folder, or None where it has none."""
        path = Path(checkpoint) / CALIBRATION_FILE.format(mode=mode)
        return cls.load(path) if path.is_file() else None
