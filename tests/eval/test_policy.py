"""Policies in the simulator: what they observe, and how a bad name fails."""

import numpy as np
import pytest

from kinema.eval.policy import IDENTITY_6D, get_policy
from kinema.eval.simulator import run_policy


class LookingPolicy:
    """Keeps every frame it is shown and stands still: checks what a pixel policy sees."""

    name, privileged, needs_frames = "looking", False, True

    def reset(self, seed, instruction):
        self.seen = []

    def act(self, obs):
        self.seen.append(obs.frames)
        assert obs.sim is not None and obs.state.shape == (10,)
        return np.concatenate([np.zeros(3), IDENTITY_6D, [0.0]]).astype(np.float32)


def test_a_pixel_policy_sees_exactly_the_recorded_frames():
    policy = LookingPolicy()
    ep = run_policy("push", 3, policy, size=32, frames=6)
    assert len(policy.seen) == 6
    for t, frames in enumerate(policy.seen):
        for cam in ep.cameras:
            np.testing.assert_array_equal(frames[cam], ep.frames[cam][t])


def test_policy_names():
    assert get_policy("noisy_expert:0.25").name == "noisy_expert:0.25"
    with pytest.raises(ValueError, match="expected a probability in \\[0, 1\\], got 2"):
        get_policy("noisy_expert:2")
    with pytest.raises(ValueError, match="unknown policy 'teleoperator'"):
        get_policy("teleoperator")
    with pytest.raises(ValueError, match="closed loop needs a world a policy acts in"):
        run_policy("free_fall", 0, get_policy("random"))


def test_moved_a_block_tells_standing_still_from_pushing():
    from kinema.eval.closed_loop import moved_a_block

    still = run_policy("push", 3, LookingPolicy(), size=32, frames=40)
    assert not moved_a_block(still)
    expert = run_policy("push", 3, get_policy("expert"), size=32)
    assert expert.info["outcome"]["success"] and moved_a_block(expert)
