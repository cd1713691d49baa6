"""The ground-truth plausibility judge flags each kind of injected violation."""

import numpy as np
import pytest

from kinema.eval.data import heldout_seed
from kinema.eval.judge import PhysicsStateJudge, get_judge
from kinema.eval.simulator import simulate
from kinema.worlds.twins import VIOLATIONS


def test_each_violation_scores_below_its_original():
    judge = PhysicsStateJudge()
    original = simulate("free_fall", heldout_seed(0), size=32)
    base = judge.score(original)
    assert base > -1.0  # no violation strength reaches 1 on a real episode
    for v in VIOLATIONS:
        twin = simulate("free_fall", heldout_seed(0), size=32, violation=v)
        strengths = judge.strengths(twin)
        assert strengths[v] > 1.5, (v, strengths)
        assert judge.score(twin) < base


def test_judge_registry_and_inputs(tmp_path):
    assert get_judge("baseline:state_checker").name == "state_checker"
    with pytest.raises(ValueError, match="unknown judge 'oracle'"):
        get_judge("oracle")
    with pytest.raises(ValueError, match="expected an Episode"):
        PhysicsStateJudge().score(np.zeros((2, 8, 8, 3), np.uint8))
