"""The diffusion timestep embedding: DiT's sinusoids of the scaled noise level, then an MLP."""

import math

import torch

from kinema.nn.timestep import TimestepEmbedding, sinusoidal


def test_sinusoidal_features():
    x = torch.tensor([0.0, 1.0, 250.0])
    f = sinusoidal(x, 8)
    assert f.shape == (3, 8) and f.dtype == torch.float32
    assert torch.equal(f[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos | sin
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    assert torch.allclose(f[2], torch.cat([(250 * freqs).cos(), (250 * freqs).sin()]), atol=1e-5)
    assert torch.allclose(f[:, :4] ** 2 + f[:, 4:] ** 2, torch.ones(3, 4), atol=1e-6)


def test_embedding_shape_scale_and_dtype():
    torch.manual_seed(0)
    emb = TimestepEmbedding(48)
    levels = torch.tensor([0.0, 0.5, 0.501, 1.0])
    out = emb(levels)
    assert out.shape == (4, 48)
    # the level is scaled by 1000 before the sinusoids: a thousandth of a level is a visible change
    assert (out[1] - out[2]).abs().max() > 1e-3
    assert torch.allclose(out[1], emb(torch.tensor([0.5]))[0], atol=1e-6)
    unscaled = TimestepEmbedding(48, scale=1.0)
    unscaled.load_state_dict(emb.state_dict())
    assert torch.allclose(unscaled(levels * 1000), out, atol=1e-4)
    assert emb.to(torch.bfloat16)(levels).dtype == torch.bfloat16
