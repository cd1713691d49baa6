"""Packed sequences: the group rule's attention mask, 3D positions, patches and the policy mode's plan."""

import math
from dataclasses import replace

import pytest
import torch

from kinema.model.modes import plan_tokens
from kinema.model.mot import NOISY, attention_mask
from kinema.model.sequence import (ACTION, AUDIO, PAD, TEXT, VISION, build, collate, latent_frames, patchify,
                                   unpatchify)
from tests.model.helpers import mixed_sample, tiny_config

CFG = tiny_config()


def _mask(tok):
    """The [L, L] (or [B, L, L]) mask of a sample (batch) from its groups."""
    batched = tok.kind.ndim == 2
    group, valid = (tok.group, tok.valid) if batched else (tok.group[None], tok.valid[None])
    m = attention_mask(group, valid, group, valid)[:, 0]
    return m if batched else m[0]


def _latent_frame_of_clean(tok, cfg, fps=16.0):
    """Each clean non-text token's latent frame, from what the token is (not from its group)."""
    tc, n = cfg.temporal_compression, int((tok.kind == TEXT).sum())
    out = torch.full((len(tok),), -1)
    T0 = n + cfg.text_margin if n else 0.0
    for i in range(len(tok)):
        kind, idx = int(tok.kind[i]), int(tok.index[i])
        if kind == VISION:
            out[i] = round((float(tok.pos[i, 0]) - T0) / (tc / fps * cfg.positions_per_second))
        elif kind == ACTION:
            out[i] = math.ceil((idx + 1) / tc)  # row r is frame r + 1
        elif kind == AUDIO:
            centre = (idx * cfg.audio_patch + cfg.audio_patch / 2) / cfg.audio_rate
            out[i] = math.ceil(centre * fps / tc)
    return out


def test_group_rule_on_a_built_sample():
    # 4 text tokens | 4 latent frames (2 clean, 2 noisy) | clean audio | actions: history clean, the rest noisy
    tok = mixed_sample(CFG, t=4, vision_gen=(False, False, True, True), audio_gen=False)
    m = _mask(tok)
    kind, gen = tok.kind, tok.gen
    text = kind == TEXT
    n = int(text.sum())
    ctx, noisy = ~gen, gen
    assert ctx.any() and noisy.any() and (gen & (kind == VISION)).any() and (gen & (kind == ACTION)).any()
    assert (ctx & (kind == ACTION)).any() and (ctx & (kind == AUDIO)).any()
    assert (tok.group[gen] == NOISY).all()

    # context never attends noisy tokens
    assert not m[ctx][:, noisy].any()
    # noisy tokens attend all context and each other (themselves included)
    assert m[noisy].all()
    # text is causal, and sees nothing of the clip
    assert torch.equal(m[:n, :n], torch.ones(n, n, dtype=torch.bool).tril())
    assert not m[:n, n:].any()
    # every clean clip token sees the whole text
    assert m[n:][ctx[n:]][:, :n].all()
    # clean tokens: same latent frame <-> mutual attention; earlier frames visible, later ones not
    frame = _latent_frame_of_clean(tok, CFG)
    clean_clip = (ctx & ~text).nonzero().squeeze(1).tolist()
    pairs = 0
    for i in clean_clip:
        for j in clean_clip:
            assert bool(m[i, j]) == bool(frame[j] <= frame[i]), (i, j, int(frame[i]), int(frame[j]))
            pairs += int(frame[i] == frame[j] and kind[i] != kind[j])
    assert pairs > 0  # vision, actions and audio of one latent frame really meet
    # e.g. action row 0 (frame 1) and the vision patches of latent frame 1 see each other, not those of frame 0 <-> 2
    row0 = ((kind == ACTION) & (tok.index == 0)).nonzero().item()
    f1 = ((kind == VISION) & (frame == 1)).nonzero().squeeze(1)
    f0 = ((kind == VISION) & (frame == 0)).nonzero().squeeze(1)
    assert m[row0, f1].all() and m[f1, row0].all() and m[row0, f0].all() and not m[f0, row0].any()


def test_padding_keys_are_never_attended():
    long = mixed_sample(CFG, t=3, seed=1)
    short = build(CFG, text=[5, 6], vision=torch.randn(CFG.latent_channels, 2, 4, 4), vision_gen=[False, True])
    batch = collate([long, short], multiple=1)
    assert batch.kind.shape == (2, len(long)) and (batch.kind[1, len(short):] == PAD).all()
    m = _mask(batch)
    valid = batch.valid
    for b in range(2):
        q = valid[b].nonzero().squeeze(1)
        assert not m[b][q][:, ~valid[b]].any()
        assert m[b].any(-1).all()  # no empty row (a padding query attends something, its output ignored)
    # the short sample's mask is unchanged by the padding
    assert torch.equal(m[1, : len(short), : len(short)], _mask(short))


def test_clean_audio_and_actions_join_the_latent_frame_of_their_time():
    tok = mixed_sample(CFG, t=3, vision_gen=(False, False, False), audio_gen=False, action_gen=[False] * 8)
    n = int((tok.kind == TEXT).sum())
    frame = _latent_frame_of_clean(tok, CFG)
    clip = tok.kind != TEXT
    assert torch.equal(tok.group[clip], n + 1 + frame[clip])
    assert torch.equal(tok.group[~clip], torch.arange(n))


# ------------------------------------------------------------------ positions (mRoPE ids)


def test_positions_of_text_video_audio_and_actions():
    n, t, gh, gw, R, Na = 5, 3, 2, 3, 8, 10
    g = torch.Generator().manual_seed(0)
    tok = build(CFG, text=list(range(10, 10 + n)), vision=torch.randn(CFG.latent_channels, t, 2 * gh, 2 * gw, generator=g),
                vision_gen=[False, True, True], audio=torch.randn(CFG.audio_channels, Na, generator=g), audio_gen=True,
                actions=torch.randn(R, 10, generator=g), action_gen=[True] * R, fps=16.0)
    pos = tok.pos
    T0 = n + CFG.text_margin
    assert T0 == 9.0
    text = pos[tok.kind == TEXT]
    assert torch.equal(text, torch.arange(n, dtype=torch.float32)[:, None].expand(n, 3))
    vision = pos[tok.kind == VISION]
    assert len(vision) == t * gh * gw
    expect = torch.tensor([[T0 + k, r, c] for k in range(t) for r in range(gh) for c in range(gw)], dtype=torch.float32)
    assert torch.allclose(vision, expect)  # one temporal unit per latent frame at 16 fps
    actions = pos[tok.kind == ACTION]
    # row r at the time of frame r + 1 (frame f at 16 fps: f / 16 s = f / 4 units)
    assert torch.allclose(actions[:, 0], T0 + torch.arange(1, R + 1) / 4.0)
    assert (actions[:, 1:] == 0).all()
    assert torch.allclose(actions[3, 0], vision[gh * gw, 0]) and torch.allclose(actions[7, 0], vision[2 * gh * gw, 0])
    audio = pos[tok.kind == AUDIO]
    ap, rate = CFG.audio_patch, CFG.audio_rate
    assert len(audio) == math.ceil(Na / ap)
    centre = (torch.arange(len(audio)) * ap + ap / 2) / rate
    assert torch.allclose(audio[:, 0], T0 + centre * CFG.positions_per_second) and (audio[:, 1:] == 0).all()
    assert CFG.positions_per_second == 4.0


def test_positions_follow_seconds_at_other_frame_rates():
    """At 8 fps a latent frame (4 video frames) lasts half a second = 2 positions; a video frame is half a unit."""
    vision = torch.randn(CFG.latent_channels, 3, 2, 2)
    a = torch.randn(8, 10)
    t16 = build(CFG, vision=vision, vision_gen=[False] * 3, actions=a, action_gen=[False] * 8, fps=16.0)
    t8 = build(CFG, vision=vision, vision_gen=[False] * 3, actions=a, action_gen=[False] * 8, fps=8.0)
    v16, v8 = t16.pos[t16.kind == VISION, 0], t8.pos[t8.kind == VISION, 0]
    assert torch.equal(v16, torch.arange(3).float())  # no text: time zero is position 0
    assert torch.allclose(v8, 2 * v16)
    assert torch.allclose(t8.pos[t8.kind == ACTION, 0], torch.arange(1, 9) * 0.5)
    # the same second sits at the same position whatever the rate: frame 8 at 8 fps == frame 16 at 16 fps
    assert torch.allclose(t8.pos[t8.kind == ACTION, 0][7], torch.tensor(4.0))
    assert torch.allclose(t16.pos[t16.kind == VISION, 0][-1], torch.tensor(2.0))


# ------------------------------------------------------------------ patches, plans


def test_patchify_round_trip_and_layout():
    C, t, h, w = 3, 2, 4, 6
    z = torch.randn(C, t, h, w)
    tokens = patchify(z, (2, 2))
    assert tokens.shape == (t * 2 * 3, C * 4)
    assert torch.equal(unpatchify(tokens, C, t, h, w, (2, 2)), z)
    # token 4 = frame 0, patch row 1, patch column 1: rows 2..3, columns 2..3, channel-major
    assert torch.equal(tokens[4], z[:, 0, 2:4, 2:4].reshape(-1))
    assert torch.equal(tokens[6], z[:, 1, 0:2, 0:2].reshape(-1))  # frame-major
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.randn(C, t, 5, 6), (2, 2))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_policy_plan_gives_history_rows_and_generates_the_rest(k):
    t, tc = 5, CFG.temporal_compression
    T = 1 + tc * (t - 1)  # 17 frames, 16 action rows
    streams = dict(vision=torch.randn(CFG.latent_channels, t, 4, 4), fps=16.0, audio=None,
                   actions=torch.randn(T, 10), domain=0)
    tok = plan_tokens(CFG, "policy", streams, text=[1, 40, 41], k=k)
    rows = tok.kind == ACTION
    gen_rows = tok.gen[rows][torch.argsort(tok.index[rows])]
    frame_of_row = torch.arange(1, T)
    assert torch.equal(gen_rows, frame_of_row > tc * (k - 1))  # rows whose frame <= 4(k-1) are given
    assert int((~gen_rows).sum()) == tc * (k - 1)
    vis = tok.kind == VISION
    assert torch.equal(tok.gen[vis].view(t, -1)[:, 0], torch.arange(t) >= k)
    # timing "after": row r is the action taken at frame r, shaping frame r + 1
    assert torch.allclose(tok.value[rows][:, :10], streams["actions"][:-1])


def test_plans_of_the_other_modes():
    t = 3
    streams = dict(vision=torch.randn(CFG.latent_channels, t, 4, 4), fps=16.0, audio=torch.randn(4, 27),
                   actions=torch.randn(9, 9), domain=1)  # camera: timing "at", row r is frame r + 1 itself
    fd = plan_tokens(CFG, "forward_dynamics", streams, k=2)
    assert not fd.gen[fd.kind == ACTION].any() and torch.allclose(fd.value[fd.kind == ACTION][:, :9], streams["actions"][1:])
    inv = plan_tokens(CFG, "inverse_dynamics", streams)
    assert inv.gen[inv.kind == ACTION].all() and not inv.gen[inv.kind == VISION].any()
    t2i = plan_tokens(CFG, "text2image", streams, text=[1, 2])
    assert int((t2i.kind == VISION).sum()) == 4 and t2i.gen[t2i.kind == VISION].all()
    t2v = plan_tokens(CFG, "text2video", streams, sound=True)
    assert t2v.gen[t2v.kind == AUDIO].all() and (t2v.kind == AUDIO).sum() == 14
    with pytest.raises(ValueError, match="clean latent frames"):
        plan_tokens(CFG, "video2video", streams, k=3)
    with pytest.raises(ValueError, match="1 \\+ k"):
        latent_frames(32, 4)


def test_noisy_frames_carry_the_last_given_frame():
    t, grid = 4, (4, 4)
    vision = torch.randn(CFG.latent_channels, t, *grid)
    streams = dict(vision=vision, fps=16.0, audio=None, actions=None, domain=None)
    per = (grid[0] // CFG.patch[0]) * (grid[1] // CFG.patch[1])
    patches = patchify(vision, CFG.patch).reshape(t, per, -1)
    for k in (1, 2, 3):
        tok = plan_tokens(CFG, "video2video", streams, text=[5, 6], k=k)
        vis = tok.kind == VISION
        cond = tok.cond[vis][:, : CFG.vision_dim].reshape(t, per, -1)
        assert torch.equal(cond[:k], torch.zeros_like(cond[:k]))  # given frames read nothing extra
        assert torch.equal(cond[k:], patches[k - 1].expand(t - k, -1, -1))  # every generated frame: frame k - 1
        assert not tok.cond[~vis].any() and not tok.cond[:, CFG.vision_dim:].any()
    t2v = plan_tokens(CFG, "text2video", streams, text=[5])
    assert not t2v.cond.any()  # nothing given: zero, the mean latent
    assert collate([t2v, tok]).cond.shape == (2, 32, CFG.cond_dim)


def test_noisy_frames_carry_the_actions_since_the_given_frame():
    t, A = 4, CFG.max_action_dim
    actions = torch.randn(1 + 4 * (t - 1), 10)  # single arm, timing "after": rows 0 .. T-2 are kept
    streams = dict(vision=torch.randn(CFG.latent_channels, t, 4, 4), fps=16.0, audio=None, actions=actions, domain=0)
    rows = actions[:-1]
    fd = plan_tokens(CFG, "forward_dynamics", streams, k=2)
    vis = fd.kind == VISION
    assert CFG.cond_rows == 3
    moved = fd.cond[vis][:, CFG.vision_dim :].reshape(t, 4, 3 * A)[:, 0]  # one row per latent frame
    assert not moved[:2].any()
    for j in (2, 3):  # frames 5 .. 4j since the given frame 1 (video frame 4): rows 4 .. 4j - 1
        assert torch.allclose(moved[j, :10], rows[4 : 4 * j].sum(0)) and torch.equal(moved[j, A : A + 10], rows[4 * j - 1])
        assert torch.equal(moved[j, 2 * A : 2 * A + 10], rows[3])  # the given frame's own row (video frame 4)
        assert not moved[j, 10:A].any() and not moved[j, A + 10 : 2 * A].any()
    from_first = plan_tokens(CFG, "forward_dynamics", streams, k=1)  # frame 0 has no row: the third block is zero
    moved = from_first.cond[from_first.kind == VISION][:, CFG.vision_dim :].reshape(t, 4, 3 * A)[:, 0]
    assert torch.equal(moved[1, A : A + 10], rows[3]) and not moved[:, 2 * A :].any()
    two = plan_tokens(replace(CFG, cond_rows=2), "forward_dynamics", streams, k=2)  # older checkpoints' layout
    assert two.cond.shape[-1] == CFG.vision_dim + 2 * A
    assert (fd.domain[vis] == 0).all()
    cam = torch.randn(13, 9)  # camera, timing "at": row r is frame r + 1's pose
    policy = plan_tokens(CFG, "policy", dict(streams, domain=1, actions=cam), k=2)
    vis = policy.kind == VISION
    moved = policy.cond[vis][:, CFG.vision_dim :]
    assert not moved[:, : 2 * A].any()  # every row after the given frames is generated
    assert torch.equal(moved[-1, 2 * A : 2 * A + 9], cam[4])  # the given frame's (video frame 4) is history
    assert (policy.domain[vis] == 1).all()
