import pytest
import torch

from kinema.tokenize.audio import AudioTokenizer, get_preset


def tok(name="tiny"):
    torch.manual_seed(0)
    return AudioTokenizer(get_preset(name)).eval()


def test_25_latent_frames_per_second_at_16_khz():
    m = tok()
    assert m.cfg.hop == 640 and m.cfg.frame_rate == 25.0
    x = torch.rand(2, 16000) * 0.2 - 0.1
    z = m.encode(x)
    assert z.shape == (2, 4, 25)
    assert m.decode(z).shape == (2, 16000)


def test_odd_lengths_are_padded_and_cropped_back():
    m = tok()
    x = torch.zeros(1, 1000)
    z = m.encode(x)
    assert z.shape[-1] == 2
    assert m.decode(z, num_samples=1000).shape == (1, 1000)


def test_causal_in_time():
    m = tok()
    x = torch.rand(1, 16000) * 0.2 - 0.1
    x2 = x.clone()
    x2[:, 8000:] = 0.5  # 8000 samples = latent frame 12.5
    z, z2 = m.encode(x), m.encode(x2)
    assert torch.equal(z[..., :12], z2[..., :12])
    assert not torch.allclose(z[..., 12:], z2[..., 12:])
    y, y2 = m.decode(z), m.decode(z2)
    assert torch.equal(y[:, : 12 * 640], y2[:, : 12 * 640])


def test_bad_inputs():
    m = tok()
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        m.encode(torch.zeros(1, 1, 640))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        m.encode(torch.full((1, 640), 3.0))
    with pytest.raises(ValueError, match="float"):
        m.encode(torch.zeros(1, 640, dtype=torch.int16))
    with pytest.raises(ValueError, match="latent must be"):
        m.decode(torch.zeros(1, 3, 5))
