"""Who acts in closed loop: the policy interface, the built-in tabletop policies, and the registry.

Legend: H height, W width, A action dims (10 on the tabletop, see kinema.worlds.tabletop).

A policy is called once per frame with an `Observation` and returns one
action. In the simulator (`kinema.eval.simulator.run_policy`) the observation
carries the frames the cameras see right now when the policy asks for them
(`needs_frames`), the robot's proprioceptive state, and a handle on the
simulator for *privileged* policies (the scripted experts read the blocks'
true poses through it). Inside a world model (`kinema.eval.closed_loop`) the
frames are the imagined ones and there is no simulator: a privileged policy
cannot act there, and is evaluated by replaying its simulator actions open loop
instead.

Built-in names for `get_policy`:

  expert               the world's scripted expert (privileged)
  noisy_expert:EPS     the expert, but each frame with probability EPS the arm
                       moves in a random direction for that frame instead
                       (privileged); EPS spreads success rates between the
                       expert's and random's, which the imagined-vs-real
                       correlation needs
  random               smooth random motion and gripper commands; looks at nothing

A learned policy (the world model's policy mode) registers a loader, as the
predictors do: `register_policy_loader(kind, fn)`, fn(path, **options) -> Policy,
picked by the `kind` in the checkpoint's config.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from kinema.eval.loaders import LOADER_MODULES, load_from_checkpoint  # LOADER_MODULES re-exported
from kinema.worlds.tabletop import make_controller, noisy_step

IDENTITY_6D = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # the rotation columns of "do not turn"


@dataclass
class SimHandle:
    """What a privileged policy may read in the simulator: the robot agent and the scene."""

    agent: object  # kinema.worlds.tabletop.GantryAgent
    scene: object  # kinema.worlds.scene.Scene


@dataclass
class Observation:
    t: int  # frame index
    instruction: str
    frames: dict[str, np.ndarray] | None  # camera -> uint8 [H, W, 3] seen at frame t (None if not rendered)
    state: np.ndarray | None  # observation.state at frame t (None inside a world model)
    sim: SimHandle | None  # privileged access (None inside a world model)


@runtime_checkable
class Policy(Protocol):
    name: str
    privileged: bool  # reads obs.sim: can act in the simulator only
    needs_frames: bool  # wants obs.frames rendered for it

    def reset(self, seed: int, instruction: str) -> None: ...

    def act(self, obs: Observation) -> np.ndarray:
        """-> float32 [A]: the action applied after frame obs.t."""
        ...


def _need_sim(policy, obs: Observation) -> SimHandle:
    if obs.sim is None:
        raise ValueError(f"policy {policy.name!r} reads the simulator's state and cannot act without it "
                         "(inside a world model it is evaluated by replaying its simulator actions)")
    return obs.sim


class ScriptedExpert:
    """The world's own scripted expert (kinema.worlds.tabletop), reading true block poses."""

    name = "expert"
    privileged = True
    needs_frames = False

    def __init__(self):
        self._controller = None

    def reset(self, seed: int, instruction: str) -> None:
        self._controller = None

    def act(self, obs: Observation) -> np.ndarray:
        sim = _need_sim(self, obs)
        if self._controller is None:
            self._controller = make_controller(sim.agent, sim.scene, "expert")
        return np.asarray(self._controller(obs.t), np.float32)


class NoisyExpert(ScriptedExpert):
    """The expert, with each frame's motion replaced by a random full-speed step with probability eps."""

    privileged = True
    needs_frames = False

    def __init__(self, eps: float):
        super().__init__()
        if not 0.0 <= eps <= 1.0:
            raise ValueError(f"noisy_expert: expected a probability in [0, 1], got {eps}")
        self.eps = float(eps)
        self.name = f"noisy_expert:{eps:g}"
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int, instruction: str) -> None:
        super().reset(seed, instruction)
        self._rng = np.random.default_rng([seed, 17])

    def act(self, obs: Observation) -> np.ndarray:
        return noisy_step(super().act(obs), self._rng, self.eps)  # the expert still sees every frame: it recovers


class RandomPolicy:
    """Smooth random motion of the gripper (low-pass filtered steps), no turning, a random gripper
    command every ~10 frames. It reads nothing, so it can act inside a world model too."""

    name = "random"
    privileged = False
    needs_frames = False

    def __init__(self):
        self.reset(0, "")

    def reset(self, seed: int, instruction: str) -> None:
        self._rng = np.random.default_rng([seed, 23])
        self._v = np.zeros(3)
        self._grip = float(self._rng.uniform())

    def act(self, obs: Observation) -> np.ndarray:
        rng = self._rng
        self._v = 0.8 * self._v + 0.2 * rng.normal(0.0, 0.02, 3)
        if rng.random() < 0.1:
            self._grip = float(rng.uniform())
        return np.concatenate([self._v, IDENTITY_6D, [self._grip]]).astype(np.float32)


# ---------------------------------------------------------------- the registry

_POLICY_LOADERS: dict[str, Callable[..., Policy]] = {}
POLICIES = ("expert", "noisy_expert:EPS", "random")


def register_policy_loader(kind: str, fn: Callable[..., Policy]) -> None:
    """Register `fn(path: Path, **options) -> Policy` for checkpoints whose config.json says `"kind": kind`."""
    if not kind or not isinstance(kind, str) or not callable(fn):
        raise ValueError("register_policy_loader: expected a non-empty kind string and a callable")
    _POLICY_LOADERS[kind] = fn


def get_policy(spec: str, **options) -> Policy:
    """'expert', 'noisy_expert:EPS', 'random', or a checkpoint folder -> a policy."""
    if spec == "expert":
        return ScriptedExpert()
    if spec == "random":
        return RandomPolicy()
    if spec.startswith("noisy_expert:"):
        try:
            eps = float(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"policy {spec!r}: expected noisy_expert:EPS with EPS a number in [0, 1]") from None
        return NoisyExpert(eps)
    if not Path(spec).is_dir():
        raise ValueError(f"unknown policy {spec!r}; expected one of {', '.join(POLICIES)} or a checkpoint folder")
    return load_from_checkpoint(spec, _POLICY_LOADERS, "policy", "the model package registers one with "
                                "kinema.eval.policy.register_policy_loader(kind, fn)", **options)
