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



def test_the_base_preset_runs_a_packed_sample():
    """Beyond shapes: the GPU-sized base preset (229M parameters, ~1 GB in fp32) runs one forward on this CPU, every
    modality clean and noisy, with text logits (the meta device cannot: packing reads which tokens are noisy)."""
    from kinema.model.sequence import collate
    from tests.model.helpers import mixed_sample

    cfg = get_preset("base", audio_channels=4)
    tok = collate([mixed_sample(cfg, seed=0), mixed_sample(cfg, seed=1, t=2, vision_gen=(False, True))])
    scored = torch.zeros(tok.kind.shape, dtype=torch.bool)
    scored[:, 1] = True
    torch.manual_seed(0)
    model = WorldModel(cfg).eval()
    with torch.no_grad():
        out, logits = model(tok, torch.rand(tok.kind.shape), text_at=scored)
    assert out.shape == tok.value.shape and logits.shape == (2, cfg.vocab_size)
    assert torch.isfinite(out).all() and torch.isfinite(logits).all()
