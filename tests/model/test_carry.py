"""The given frame's detail carried into the generated frames (kinema.model.carry), alone and through the pipeline."""

import numpy as np
import pytest

from kinema.model.carry import carry_detail
from tests.model.helpers import random_frames
from tests.model.test_pipeline import T, _run

H = 4


def _frames(value, n=3):
    return np.full((n, H, H, 3), value, np.uint8)


def test_every_frame_gets_the_last_given_frames_round_trip_error():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, H, H, 3), dtype=np.uint8)
    given, decoded = rng.integers(0, 256, (2, H, H, 3), dtype=np.uint8)
    assert np.array_equal(carry_detail(x, given, decoded),
                          np.clip(x.astype(int) + given.astype(int) - decoded.astype(int), 0, 255))
    assert np.array_equal(carry_detail(np.stack([decoded] * 2), given, decoded), np.stack([given] * 2))


def test_a_gate_closes_where_the_frame_changed():
    decoded_last, given_last = _frames(100, 1)[0], _frames(110, 1)[0]
    given_last[0, 0] = [200, 0, 50]  # detail the round trip lost
    frames = _frames(100)
    frames[1, 2, 2] = [100, 140, 100]  # changed by 40 levels in one channel: past a gate of 32
    frames[2, 3, 3] = [116, 100, 100]  # changed by 16: half way through the gate
    out = carry_detail(frames, given_last, decoded_last, 32)
    assert np.array_equal(out[0], given_last)
    assert np.array_equal(out[1, 2, 2], [100, 140, 100])
    assert np.array_equal(out[2, 3, 3], [121, 105, 105])  # x + (1 - 16/32) * (110 - 100)
    mask = np.ones((3, H, H), bool)
    mask[1, 2, 2] = mask[2, 3, 3] = False
    assert np.array_equal(out[mask], np.broadcast_to(given_last, (3, H, H, 3))[mask])


def test_the_result_stays_in_range():
    out = carry_detail(_frames(250), _frames(255, 1)[0], _frames(200, 1)[0])
    assert out.dtype == np.uint8 and out.max() == 255


@pytest.mark.parametrize("mode", ["image2video", "video2video", "forward_dynamics"])
def test_the_pipeline_returns_the_given_frames_and_carries_their_detail(tiny_pipeline, mode):
    off = _run(tiny_pipeline, mode, carry=False)
    on = _run(tiny_pipeline, mode, carry=True)
    Tc = on["context_frames"]
    given = random_frames(T)[:Tc]
    assert np.array_equal(on["frames"][:Tc], given)
    assert not np.array_equal(off["frames"][:Tc], given)  # the decoder's round trip
    err = given[-1].astype(int) - off["frames"][Tc - 1]
    assert np.array_equal(on["frames"][Tc:], np.clip(off["frames"][Tc:] + err, 0, 255))


def test_carry_needs_given_frames_and_a_future(tiny_pipeline):
    for mode in ("text2video", "inverse_dynamics"):
        with pytest.raises(ValueError, match=f"carry: only where given frames start a future to generate; {mode}"):
            _run(tiny_pipeline, mode, carry=True)
    with pytest.raises(ValueError, match="carry must be true or false"):
        _run(tiny_pipeline, "video2video", carry=16)
    assert _run(tiny_pipeline, "text2video", carry=False)["frames"].shape[0] == T  # off is fine anywhere


def test_by_default_on_except_where_the_actions_move_the_view(tiny_pipeline):
    arm = _run(tiny_pipeline, "forward_dynamics")["frames"]
    assert np.array_equal(arm, _run(tiny_pipeline, "forward_dynamics", carry=True)["frames"])
    assert np.array_equal(_run(tiny_pipeline, "video2video")["frames"],
                          _run(tiny_pipeline, "video2video", carry=True)["frames"])
    pose = np.random.default_rng(0).normal(size=(T, 9)).astype(np.float32)  # the camera's: timing "at"
    cam = dict(actions=pose, domain_name="camera")
    assert np.array_equal(_run(tiny_pipeline, "forward_dynamics", **cam)["frames"],
                          _run(tiny_pipeline, "forward_dynamics", carry=False, **cam)["frames"])
    assert not np.array_equal(_run(tiny_pipeline, "forward_dynamics", carry=True, **cam)["frames"],
                              _run(tiny_pipeline, "forward_dynamics", carry=False, **cam)["frames"])


# ------------------------------------------------------------------ rollouts

ROLL = dict(window=T, max_context=9, num_steps=2)


def test_a_rollout_carries_the_real_frames_detail_into_every_chunk_and_conditions_on_decoded_frames(tiny_pipeline):
    ctx, future = random_frames(9), 23  # two chunks: 8 frames after 9 given, then 15 after 9 made
    on = tiny_pipeline.rollout(ctx, future, carry=True, **ROLL)
    off = tiny_pipeline.rollout(ctx, future, carry=False, **ROLL)
    decoded_last = tiny_pipeline.run("video2video", num_frames=T, context=ctx, carry=False, num_steps=2)["frames"][8]
    assert np.array_equal(on, carry_detail(off, ctx[-1], decoded_last))
    one = tiny_pipeline.rollout(ctx, T - 9, carry=True, **ROLL)  # one window: what run() shows
    assert np.array_equal(one, tiny_pipeline.run("video2video", num_frames=T, context=ctx, carry=True,
                                                 num_steps=2)["frames"][9:])


def test_an_imagination_fed_back_carries_only_the_real_frames_detail(tiny_pipeline):
    ctx = random_frames(9)
    made = tiny_pipeline.rollout(ctx, 8, carry=True, **ROLL)  # what the closed loop feeds back
    fed = np.concatenate([ctx, made])
    decoded_last = tiny_pipeline.decode_latents(tiny_pipeline.encode_frames(ctx), 9)[-1]
    again = tiny_pipeline.rollout(fed, 8, given=9, carry=True, carry_gate=64, **ROLL)
    assert np.array_equal(again, carry_detail(tiny_pipeline.rollout(fed, 8, carry=False, **ROLL), ctx[-1],
                                              decoded_last, 64))
    with pytest.raises(ValueError, match="given: expected 1..17 real frames"):
        tiny_pipeline.rollout(fed, 8, given=0, **ROLL)
    with pytest.raises(ValueError, match="carry_gate: expected pixel levels > 0"):
        tiny_pipeline.rollout(fed, 8, carry_gate=0, **ROLL)


def test_the_gate_reaches_the_pipeline(tiny_pipeline):
    off = _run(tiny_pipeline, "video2video", carry=False)["frames"]
    gated = _run(tiny_pipeline, "video2video", carry=True, carry_gate=16)["frames"]
    given = random_frames(T)[:9]
    assert np.array_equal(gated[9:], carry_detail(off[9:], given[-1], off[8], 16))
    assert not np.array_equal(gated, _run(tiny_pipeline, "video2video", carry=True)["frames"])
