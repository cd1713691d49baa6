"""The GPU presets are defined and shape-checked without allocating them (meta device)."""

import pytest
import torch

from kinema.model.config import PRESETS, WorldModelConfig, get_preset
from kinema.model.world_model import WorldModel


@pytest.mark.parametrize("name, low, high", [("tiny", 0.3, 1), ("small", 8, 16), ("base", 150, 250),
                                             ("large", 1200, 1700)])
def test_preset_sizes(name, low, high):
    with torch.device("meta"):
        model = WorldModel(get_preset(name))
    n = model.num_parameters() / 1e6
    assert low <= n <= high, f"{name}: {n:.1f}M parameters"
    layer = model.backbone.layers[0]
    # two experts of identical shape in every layer
    assert [p.shape for p in layer.und.parameters()] == [p.shape for p in layer.gen.parameters()]


def test_presets_round_trip_config():
    for name in PRESETS:
        cfg = get_preset(name)
        assert WorldModelConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_preset_and_bad_width():
    with pytest.raises(ValueError, match="unknown world-model preset"):
        get_preset("huge")
    with pytest.raises(ValueError, match="heads"):
        WorldModelConfig(width=100, heads=3)
