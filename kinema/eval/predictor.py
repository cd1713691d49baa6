"""The one interface every evaluation runs against: given what came before, predict what comes next.

Legend: Tc context frames, Tf frames to predict, T = Tc + Tf, H height,
W width, A action dims, K object slots.

A `Predictor` answers a `PredictionRequest` with future frames, uint8
[Tf, H, W, 3]: the world model (diffusion, later autoregressive), the
baselines in `kinema.eval.baselines` and the simulator oracles in
`kinema.eval.simulator` all implement it, so every benchmark can run before the
world model exists and compares like with like once it does. A predictor that
can also read actions back from frames (inverse dynamics) implements
`infer_actions(request) -> f32 [T - 1, A]` as well.

Getting one by name:

    get_predictor("baseline:copy_last")        # see PREDICTORS for every name
    get_predictor("checkpoints/my_model")      # a checkpoint folder (config.json + weights)

A checkpoint is loaded by the loader registered for the `kind` in its
config.json. The world-model package registers its loader when imported, with
one call:

    from kinema.eval.predictor import register_model_loader
    register_model_loader("mot", load_mot_predictor)   # fn(path: Path, **options) -> Predictor

`kinema eval --model PATH` passes `device` ("auto", "cpu" or "cuda") as an option.

`get_predictor` imports `kinema.model` (when that package exists) before
looking the kind up, so no other wiring is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from kinema.eval.loaders import LOADER_MODULES, load_from_checkpoint  # LOADER_MODULES re-exported


@dataclass
class OracleInfo:
    """Ground truth a real world model never sees; only oracle-type baselines may read it."""

    scenario: str  # world name, as kinema.worlds.registry.WORLDS
    seed: int  # the episode's simulation seed
    size: int  # frame height = width in pixels
    policy: str | None  # who acted in the episode (tabletop), else None
    context_masks: np.ndarray  # uint8 [Tc, H, W] object id per pixel of the context frames
    context_objects: np.ndarray  # float64 [Tc, K, 13] object states of the context frames
    objects_info: list[dict]  # per object: id, name, kind, colour, rgb, size ...
    context_state: np.ndarray | None = None  # float32 [Tc, S] observation.state of the context frames
    start: int = 0  # index in the episode of the request's first context frame
    prefix_actions: np.ndarray | None = None  # float32 [start, A] the true actions before the clip


@dataclass
class PredictionRequest:
    """Everything a world model may condition on to predict the next `num_frames` frames of one camera."""

    context: np.ndarray  # uint8 [Tc, H, W, 3] the frames so far (for inverse dynamics: the whole clip)
    num_frames: int  # Tf, how many frames to predict (0 for inverse dynamics)
    fps: float
    camera: str
    actions: np.ndarray | None = None  # float32 [T, A] for the whole clip (row t: the action of frame t), or None
    action_names: tuple[str, ...] = ()
    # "after": row t is applied after frame t is seen, so it shapes frame t + 1 (tabletop);
    # "at": row t is where the camera is at frame t (camera motion, a pose relative to frame 0)
    action_timing: str = "after"
    prompt: str | None = None  # the instruction (tabletop) or the scenario's description; never the outcome
    intrinsics: np.ndarray | None = None  # float64 [T, 3, 3] pinhole K in pixels
    extrinsics: np.ndarray | None = None  # float64 [T, 4, 4] world->camera, OpenCV axes
    oracle: OracleInfo | None = field(default=None, repr=False)
    # how many leading context frames are real; the rest this predictor made (an imagination fed back). None: all
    given: int | None = None

    def __post_init__(self):
        c = self.context
        if not isinstance(c, np.ndarray) or c.dtype != np.uint8 or c.ndim != 4 or c.shape[-1] != 3 or len(c) < 1:
            shape = getattr(c, "shape", None)
            raise ValueError(f"context: expected uint8 frames [Tc >= 1, H, W, 3], got {getattr(c, 'dtype', type(c))} {shape}")
        if int(self.num_frames) < 0:
            raise ValueError(f"num_frames: expected a number of frames to predict >= 0, got {self.num_frames}")
        T = len(c) + int(self.num_frames)
        if self.given is not None and not 1 <= int(self.given) <= len(c):
            raise ValueError(f"given: expected 1..{len(c)} real frames at the start of context, got {self.given}")
        if self.action_timing not in ("after", "at"):
            raise ValueError(f"action_timing: expected 'after' or 'at', got {self.action_timing!r}")
        for name in ("actions", "intrinsics", "extrinsics"):
            v = getattr(self, name)
            if v is not None and len(v) != T:
                raise ValueError(f"{name}: expected one row per frame of the clip (context + predicted = {T}), got {len(v)}")

    @property
    def frames_total(self) -> int:
        return len(self.context) + int(self.num_frames)


@runtime_checkable
class Predictor(Protocol):
    """Anything that turns a request into future frames.

    A predictor may also define `predict_batch(requests) -> list of arrays`: the
    benchmarks then hand it the requests that are independent of each other
    (the four views of a rollout) in one call, for a model to batch on its device.
    """

    name: str  # a short label for tables and file names
    uses_oracle: bool  # True if it reads request.oracle (reports mark such rows as oracles)

    def predict(self, request: PredictionRequest) -> np.ndarray:
        """-> uint8 [request.num_frames, H, W, 3], H and W as the context."""
        ...


@runtime_checkable
class InverseDynamics(Protocol):
    """Anything that reads the actions back from a clip's frames."""

    name: str
    uses_oracle: bool

    def infer_actions(self, request: PredictionRequest) -> np.ndarray:
        """request.context holds the whole clip [T, H, W, 3] -> float32 [T - 1, A]: row t is the action
        that led from frame t to frame t + 1 (for camera motion: the pose of frame t + 1)."""
        ...


def inverse_dynamics_targets(actions: np.ndarray, timing: str) -> np.ndarray:
    """The rows of a clip's actions [T, A] that its frames determine -> [T - 1, A].

    "after" (tabletop): row t moves the scene from frame t to t + 1, so rows
    0..T-2 (the last row acts after the last frame: nothing shows it).
    "at" (camera motion): row t is the pose at frame t, and row 0 is the
    identity by definition, so rows 1..T-1.
    """
    if timing == "after":
        return actions[:-1]
    if timing == "at":
        return actions[1:]
    raise ValueError(f"timing: expected 'after' or 'at', got {timing!r}")


def predict_checked(predictor: Predictor, request: PredictionRequest) -> np.ndarray:
    """Call `predictor.predict` and check what came back, naming the predictor if it is wrong."""
    if request.num_frames < 1:
        raise ValueError(f"num_frames: a prediction needs at least 1 frame to predict, got {request.num_frames}")
    return _check(predictor, request, predictor.predict(request))


def predict_all(predictor: Predictor, requests: list[PredictionRequest]) -> list[np.ndarray]:
    """Predictions for independent requests: one `predict_batch` call if the predictor has one, else one
    `predict` call each; every output checked."""
    batch = getattr(predictor, "predict_batch", None)
    if batch is None or len(requests) < 2:
        return [predict_checked(predictor, r) for r in requests]
    outs = list(batch(requests))
    if len(outs) != len(requests):
        raise ValueError(f"predictor {predictor.name!r}: predict_batch returned {len(outs)} predictions for "
                         f"{len(requests)} requests")
    return [_check(predictor, r, o) for r, o in zip(requests, outs)]


def _check(predictor, request: PredictionRequest, out) -> np.ndarray:
    want = (int(request.num_frames), *request.context.shape[1:])
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or tuple(out.shape) != want:
        got = f"{getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}"
        raise ValueError(f"predictor {predictor.name!r} returned {got}; expected uint8 {want} (future frames)")
    return out


def infer_checked(model: InverseDynamics, request: PredictionRequest) -> np.ndarray:
    """Call `model.infer_actions` and check what came back, naming the model if it is wrong."""
    out = model.infer_actions(request)
    T = len(request.context)
    if not isinstance(out, np.ndarray) or out.ndim != 2 or out.shape[0] != T - 1 or not np.all(np.isfinite(out)):
        raise ValueError(f"inverse dynamics {model.name!r} returned {getattr(out, 'dtype', type(out).__name__)} "
                         f"{tuple(getattr(out, 'shape', ()))}; expected finite floats [{T - 1}, A] (one row per transition)")
    return out.astype(np.float32)


# ---------------------------------------------------------------- the registry

_MODEL_LOADERS: dict[str, Callable[..., object]] = {}


def register_model_loader(kind: str, fn: Callable[..., object]) -> None:
    """Register `fn(path: Path, **options) -> Predictor` for checkpoints whose config.json says `"kind": kind`."""
    if not kind or not isinstance(kind, str):
        raise ValueError(f"kind: expected a non-empty string, got {kind!r}")
    if not callable(fn):
        raise ValueError(f"fn: expected a callable (path, **options) -> Predictor, got {type(fn).__name__}")
    _MODEL_LOADERS[kind] = fn


def _builtin() -> dict[str, Callable[..., object]]:
    # imported here: the simulator oracles pull in MuJoCo, which a model-only user may not need
    from kinema.eval import baselines, simulator

    return {
        "copy_last": baselines.CopyLastFrame,
        "zero_motion": baselines.ZeroMotion,
        "linear": baselines.LinearObjectMotion,
        "mean_action": baselines.MeanAction,
        "second_take": simulator.SecondTake,
        "simulator": simulator.SimulatorOracle,
        "tokenizer": simulator.TokenizerRoundTrip,
        "tokenizer_carry": simulator.TokenizerCarry,
        "state_diff": baselines.StateDifferenceActions,
    }


PREDICTORS = ("copy_last", "zero_motion", "linear", "mean_action", "second_take", "simulator", "tokenizer",
              "tokenizer_carry", "state_diff")


def get_predictor(spec: str, **options):
    """"baseline:NAME" (a name in PREDICTORS) or the path of a checkpoint folder -> a predictor."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"predictor: expected 'baseline:NAME' or a checkpoint path, got {spec!r}")
    if spec.startswith("baseline:"):
        name = spec.split(":", 1)[1]
        table = _builtin()
        if name not in table:
            raise ValueError(f"unknown baseline {name!r}; expected one of: {', '.join(PREDICTORS)}")
        return table[name](**options)
    if not Path(spec).exists():
        raise ValueError(f"--model {spec}: no such checkpoint folder (for a baseline write 'baseline:NAME', "
                         f"NAME one of {', '.join(PREDICTORS)})")
    return load_from_checkpoint(spec, _MODEL_LOADERS, "world-model", "the model package registers one with "
                                "kinema.eval.predictor.register_model_loader(kind, fn)", **options)
