import math

import pytest
import torch

from kinema.nn.fsq import FSQ


def test_cosmos_codebook():
    f = FSQ()
    assert f.codebook_size == 64_000 and f.dim == 6
    assert f.bits_per_token == pytest.approx(math.log2(64_000))


def test_every_index_round_trips_through_codes():
    f = FSQ()
    idx = torch.arange(64_000)
    codes = f.indices_to_codes(idx)
    assert codes.shape == (64_000, 6)
    assert torch.equal(f.codes_to_indices(codes), idx)
    assert codes.abs().max() <= 1


def test_quantized_codes_take_exactly_the_levels():
    f = FSQ((8, 5))
    codes, idx = f(torch.linspace(-6, 6, 1000).repeat(2, 1).T.reshape(1000, 2, 1))
    assert codes[:, 0].unique().numel() == 8 and codes[:, 1].unique().numel() == 5
    assert torch.equal(f.indices_to_codes(idx), codes)


def test_straight_through_gradient():
    f = FSQ()
    z = torch.randn(2, 6, 3, requires_grad=True)
    codes, _ = f(z)
    codes.sum().backward()
    assert z.grad is not None and (z.grad.abs() > 0).all()


def test_bad_inputs():
    f = FSQ()
    with pytest.raises(ValueError, match=r"\[B, 6"):
        f(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="64000"):
        f.indices_to_codes(torch.tensor([64_000]))
    with pytest.raises(ValueError, match="integer"):
        f.indices_to_codes(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=">= 2"):
        FSQ((8, 1))
