import torch

from kinema.tokenize import wavelet


def test_patch_is_exactly_invertible():
    x = torch.rand(2, 3, 17, 32, 48, dtype=torch.float64) * 2 - 1
    y = wavelet.patch(x)
    assert y.shape == (2, 192, 5, 8, 12)
    assert torch.allclose(wavelet.unpatch(y), x, atol=1e-12)


def test_low_band_is_the_block_mean_and_energy_is_kept():
    x = torch.rand(1, 3, 8, 8, 8, dtype=torch.float64)
    y = wavelet.dwt3d(x)
    mean = x.reshape(1, 3, 4, 2, 4, 2, 4, 2).mean((3, 5, 7))
    assert torch.allclose(y[:, :3], mean)
    # orthonormal Haar scaled by 1/(2 sqrt 2) per level: energy shrinks by exactly 8
    assert torch.allclose((y**2).sum() * 8, (x**2).sum())


def test_first_frame_is_encoded_alone():
    x = torch.rand(1, 3, 9, 16, 16)
    x2 = x.clone()
    x2[:, :, 1:] = torch.rand_like(x2[:, :, 1:])
    assert torch.equal(wavelet.patch(x)[:, :, 0], wavelet.patch(x2)[:, :, 0])


def test_an_image_is_a_one_frame_video():
    img = torch.rand(1, 3, 1, 16, 16) * 2 - 1
    y = wavelet.patch(img)
    assert y.shape == (1, 192, 1, 4, 4)
    assert torch.allclose(wavelet.unpatch(y), img, atol=1e-6)
