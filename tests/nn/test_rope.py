"""3D mRoPE: relative per axis, plain 1-D RoPE on text, Qwen2-VL's sections, float positions."""

import pytest
import torch

from kinema.nn.rope import apply_rope, rope_angles, sections

DH, H = 32, 2


def _rotate(x, pos):
    """x [1, H, L, Dh] rotated by pos [L, 3]."""
    cos, sin = rope_angles(pos[None].float(), x.shape[-1])
    return apply_rope(x, cos, sin)


def _dot(q, k, pq, pk):
    return (_rotate(q, pq[None]) * _rotate(k, pk[None])).sum(-1).flatten()  # [H]


def test_sections_split_pairs_like_qwen2_vl():
    assert sections(128) == (16, 24, 24)
    assert sections(32) == (4, 6, 6)
    for dh in (8, 16, 32, 64, 96):
        assert sum(sections(dh)) == dh // 2
    with pytest.raises(ValueError, match="even"):
        sections(33)
    with pytest.raises(ValueError, match="B, L, 3"):
        rope_angles(torch.zeros(1, 4), 32)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_attention_score_depends_only_on_the_offset_along_each_axis(axis):
    g = torch.Generator().manual_seed(axis)
    q, k = torch.randn(1, H, 1, DH, generator=g), torch.randn(1, H, 1, DH, generator=g)
    base = torch.tensor([3.0, 1.0, 2.0])

    def at(p):
        v = base.clone()
        v[axis] += p
        return v

    for d in (0.0, 1.0, 2.5, -4.0):
        scores = torch.stack([_dot(q, k, at(p), at(p + d)) for p in (0.0, 1.0, 7.0, 13.5, 100.0)])
        assert torch.allclose(scores, scores[:1].expand_as(scores), atol=1e-4), (axis, d)
    # ... and it does depend on the offset, on this axis
    assert not torch.allclose(_dot(q, k, at(0.0), at(0.0)), _dot(q, k, at(0.0), at(3.0)), atol=1e-3)


def test_each_axis_rotates_only_its_own_pairs():
    x = torch.randn(1, H, 1, DH)
    t, hw, _ = sections(DH)
    P = DH // 2
    for axis, (lo, hi) in enumerate([(0, t), (t, t + hw), (t + hw, P)]):
        p = torch.zeros(1, 3)
        p[0, axis] = 5.0
        y = _rotate(x, p)
        moved = ~torch.isclose(y, x, atol=1e-6)
        pairs = moved[..., :P] | moved[..., P:]
        assert pairs[..., lo:hi].all() and not pairs[..., :lo].any() and not pairs[..., hi:].any(), axis


def test_text_positions_equal_plain_1d_rope():
    L, theta = 7, 10000.0
    x = torch.randn(1, H, L, DH)
    p = torch.arange(L, dtype=torch.float32)
    y = _rotate(x, p[:, None].expand(L, 3))
    # reference 1-D RoPE, rotate-half layout: pair i = (x_i, x_{i+P}) rotated by p * theta^(-i/P)
    P = DH // 2
    inv = theta ** (-torch.arange(P, dtype=torch.float32) / P)
    ang = p[:, None] * inv  # [L, P]
    a, b = x[..., :P], x[..., P:]
    ref = torch.cat([a * ang.cos() - b * ang.sin(), b * ang.cos() + a * ang.sin()], -1)
    assert torch.allclose(y, ref, atol=1e-5)


def test_rotation_keeps_norms_and_dtype_and_takes_fractional_positions():
    x = torch.randn(1, H, 3, DH)
    pos = torch.tensor([[0.25, 0.0, 0.0], [4.5, 1.0, 2.0], [1e3, 7.0, 3.0]])
    y = _rotate(x, pos)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-4)
    assert not torch.allclose(_rotate(x, pos * 0 + 0.25), _rotate(x, pos * 0 + 0.5))
    assert torch.equal(_rotate(x, torch.zeros(3, 3)), x)
    assert _rotate(x.bfloat16(), pos).dtype == torch.bfloat16
