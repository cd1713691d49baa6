"""The embodiment registry: a new robot is a new slot of the domain-aware action layers."""

from dataclasses import replace

import pytest

from kinema.model.config import get_preset
from kinema.model.embodiments import BUILTIN, Embodiment, find, index, register_embodiment


def _registry():
    return [replace(e) for e in BUILTIN]


def test_register_adds_a_slot_with_its_dim():
    reg = _registry()
    slot = register_embodiment(reg, "quadruped", 12, timing="after")
    assert slot == 2 and reg[2].name == "quadruped" and reg[2].dim == 12 and reg[2].timing == "after"
    assert reg[2].mean == [0.0] * 12 and reg[2].std == [1.0] * 12
    assert index(reg, "quadruped") == 2 and find(reg, dim=12) == 2
    assert len(BUILTIN) == 2  # the built-in registry is untouched


def test_register_refuses_bad_embodiments():
    reg = _registry()
    with pytest.raises(ValueError, match=r"dim must be in \[1, 64\].*got 65"):
        register_embodiment(reg, "octopus", 65)
    with pytest.raises(ValueError, match=r"dim must be in \[1, 8\]"):
        register_embodiment(reg, "arm8", 9, max_action_dim=8)
    with pytest.raises(ValueError, match="'camera' is already registered \\(slot 1\\)"):
        register_embodiment(reg, "camera", 3)
    register_embodiment(reg, "third", 2, max_embodiments=3)
    with pytest.raises(ValueError, match="all 3 embodiment slots are taken"):
        register_embodiment(reg, "fourth", 2, max_embodiments=3)
    with pytest.raises(ValueError, match="timing must be one of"):
        register_embodiment(reg, "sideways", 2, timing="before")
    with pytest.raises(ValueError, match="2 action names for dim 3"):
        register_embodiment(reg, "named", 3, action_names=("a", "b"))
    assert [e.name for e in reg] == ["single_arm", "camera", "third"]  # failures add nothing


def test_config_validates_its_registry():
    with pytest.raises(ValueError, match="exceed max_embodiments=1"):
        get_preset("tiny", max_embodiments=1)
    with pytest.raises(ValueError, match="mean/std must have 2 entries"):
        Embodiment("x", 2, mean=[0.0])
    with pytest.raises(ValueError, match="unknown embodiment"):
        index(_registry(), "hexapod")
    with pytest.raises(ValueError, match="no registered embodiment has actions 5-D"):
        find(_registry(), dim=5)
    # find prefers matching action names, then the only slot of that width
    reg = _registry()
    assert find(reg, action_names=BUILTIN[1].action_names, dim=10) == 1
    register_embodiment(reg, "arm2", 10)
    with pytest.raises(ValueError, match="no registered embodiment"):
        find(reg, dim=10)  # two 10-D "after" embodiments: ambiguous
