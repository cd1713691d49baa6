"""What every world provides to the rollout, and the defaults of a passive physics scene.

Legend: T frames, K object slots.

A world builds a randomized scene from a Generator, may drive it with an agent
(a robot or a moving camera), and reads its outcome from the recorded states.
"""

from __future__ import annotations

import numpy as np

from kinema.data.episode import OBJECT_STATE


class World:
    name = ""
    family = "physics"  # physics | tabletop | camera
    description = ""
    robot_type = "none"
    fps = 16.0
    frames = 33
    max_objects = 8  # object slots in the state arrays (the scene may use fewer)
    action_names: tuple[str, ...] = ()  # passive scenes take no action

    def build(self, rng: np.random.Generator):
        raise NotImplementedError

    def make_agent(self, model, data, scene, rng, policy: str, fps: float):
        """None for passive scenes; else an object with before_frame(t) and act(t) -> action."""
        return None

    def state_names(self, k_max: int) -> list[str]:
        return [f"object_{i + 1}.{f}" for i in range(k_max) for f in OBJECT_STATE]

    def observation_state(self, model, data, objects: np.ndarray, agent) -> np.ndarray:
        """observation.state of a passive scene: every object slot's 13-D state."""
        return objects.reshape(-1)

    def outcome(self, scene, states: np.ndarray, contacts: list[dict], agent, fps: float) -> dict:
        return {}

    def outcome_facts(self, scene, outcome: dict) -> list[tuple[dict, str, str | None]]:
        """(question, answer, caption sentence or None) for the world's own outcome."""
        return []

    def scene_sentence(self, scene) -> str:
        return self.description

    def task_text(self, scene) -> str:
        return self.description
