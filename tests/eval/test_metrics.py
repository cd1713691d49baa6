"""Tests for kinema.eval.metrics: references (scikit-image), hand cases, bad inputs.

Legend: T frames, H height, W width, C channels.
"""

import json
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from kinema.eval import metrics as M

SKIMAGE_KW = {
    "skimage": {},
    "wang": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
}


def _structured(T=3, H=48, W=56, seed=0):
    """Smooth gradients with a rectangle and a disc that move a little each frame."""
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    frames = []
    for t in range(T):
        f = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)
        f[10 + t : 22 + t, 8 + 2 * t : 24 + 2 * t] = [0.9, 0.2, 0.1]
        disc = (np.mgrid[0:H, 0:W][0] - 30) ** 2 + (np.mgrid[0:H, 0:W][1] - 40 + t) ** 2 < 64
        f[disc] = [0.1, 0.3, 0.95]
        frames.append(f)
    return np.stack(frames)  # [T, H, W, 3] float64 in [0, 1]


def _skimage_ssim(a, b, mode):
    return [structural_similarity(a[t], b[t], data_range=1, channel_axis=-1, **SKIMAGE_KW[mode]) for t in range(len(a))]


# ---------------------------------------------------------------- SSIM


@pytest.mark.parametrize("mode", ["skimage", "wang"])
def test_ssim_matches_skimage_random(mode):
    rng = np.random.default_rng(0)
    a = rng.random((3, 32, 40, 3))
    b = np.clip(a + 0.15 * rng.standard_normal(a.shape), 0, 1)
    r = M.ssim(a, b, mode=mode)
    ref = _skimage_ssim(a, b, mode)
    np.testing.assert_allclose(r.per_frame, ref, atol=1e-5)
    assert r.value == pytest.approx(np.mean(ref), abs=1e-5)
    assert "data_range=1" in r.convention


@pytest.mark.parametrize("mode", ["skimage", "wang"])
def test_ssim_matches_skimage_structured_and_noisy(mode):
    a = _structured()
    b = np.roll(a, 1, axis=2)  # structured prediction off by one pixel
    rng = np.random.default_rng(1)
    noisy = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    for pred in (b, noisy):
        np.testing.assert_allclose(M.ssim(pred, a, mode=mode).per_frame, _skimage_ssim(pred, a, mode), atol=1e-5)


def test_ssim_uint8_torch_and_grey():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ref = _skimage_ssim(a / 255.0, b / 255.0, "skimage")
    np.testing.assert_allclose(M.ssim(torch.from_numpy(a), torch.from_numpy(b)).per_frame, ref, atol=1e-5)
    g = _structured(T=2)[..., :1]
    ref = _skimage_ssim(g, g[:, ::-1].copy(), "skimage")
    np.testing.assert_allclose(M.ssim(g, g[:, ::-1].copy()).per_frame, ref, atol=1e-5)
    assert M.ssim(a, a).value == pytest.approx(1.0)


def test_ssim_rejects_small_frames_and_bad_mode():
    x = np.zeros((1, 8, 8, 3))
    assert M.ssim(x, x).value == pytest.approx(1.0)  # 8 >= 7
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(x, x, mode="wang")
    with pytest.raises(ValueError, match="mode"):
        M.ssim(x, x, mode="gaussian")


# ---------------------------------------------------------------- PSNR, OpenSTL


def test_psnr_hand_case_and_cap():
    target = np.zeros((2, 4, 4, 3))
    pred = target.copy()
    pred[0] = 0.1  # MSE 0.01 -> 20 dB; frame 1 identical -> capped
    r = M.psnr(pred, target)
    assert r.per_frame == pytest.approx((20.0, M.PSNR_CAP_DB))
    assert r.value == pytest.approx((20.0 + M.PSNR_CAP_DB) / 2)
    assert "capped at 100 dB" in r.convention
    # uint8 is divided by 255: 255 vs 0 is MSE 1 -> 0 dB
    full = np.full((1, 2, 2, 3), 255, np.uint8)
    assert M.psnr(full, np.zeros_like(full)).value == pytest.approx(0.0)


def test_mse_mae_openstl_hand_case():
    target = np.zeros((2, 2, 2, 1))
    pred = target.copy()
    pred[0] = 0.5  # sq sum 4 * 0.25 = 1, abs sum 2
    pred[1, 0, 0, 0] = 1.0  # sq sum 1, abs sum 1
    r = M.mse_mae_openstl(pred, target)
    assert r["mse"].value == pytest.approx(1.0) and r["mse"].per_frame == pytest.approx((1.0, 1.0))
    assert r["mae"].value == pytest.approx(1.5)
    # same as OpenSTL's formula on [B, T, C, H, W]
    rng = np.random.default_rng(3)
    a, b = rng.random((5, 6, 7, 3)), rng.random((5, 6, 7, 3))
    ref = np.mean((a - b)[None].transpose(0, 1, 4, 2, 3) ** 2, axis=(0, 1)).sum()
    assert M.mse_mae_openstl(a, b)["mse"].value == pytest.approx(ref)
    assert "C*H*W" in r["mse"].convention


# ---------------------------------------------------------------- object IoU


def test_object_iou_identical_is_one():
    rng = np.random.default_rng(4)
    masks = rng.integers(0, 4, (3, 10, 10), dtype=np.uint8)
    r = M.object_iou(masks, masks)
    assert r.value == 1.0 and set(r.per_object) == {1, 2, 3}


def test_object_iou_partial_overlap_hand_case():
    target = np.zeros((3, 6, 6), np.int64)
    pred = np.zeros_like(target)
    # object 1: frame 0 pred 2x2 inside target 2x3 -> 4/6; frame 1 absent in both (skipped); frame 2 equal -> 1
    target[0, 0:2, 0:3] = 1
    pred[0, 0:2, 0:2] = 1
    target[2, 4:6, 4:6] = pred[2, 4:6, 4:6] = 1
    # object 2: frame 0 only in target -> 0; frame 1 equal -> 1; frame 2 absent (skipped)
    target[0, 4, 0] = 2
    target[1, 3, 3] = pred[1, 3, 3] = 2
    r = M.object_iou(torch.from_numpy(pred), target)
    assert r.per_object[1] == pytest.approx(5 / 6)
    assert r.per_object[2] == pytest.approx(0.5)
    assert r.value == pytest.approx((5 / 6 + 0.5) / 2)
    # an id absent everywhere has no IoU and does not drag the mean
    r = M.object_iou(pred, target, ids=[1, 7])
    assert r.per_object[7] is None and r.value == pytest.approx(5 / 6)
    assert math.isnan(M.object_iou(pred, target, ids=[9]).value)
    json.dumps(M.object_iou(pred, target, ids=[9]).to_dict(), allow_nan=False)


# ---------------------------------------------------------------- Physics-IQ


def _moving_square(T=8, H=48, W=48):
    rng = np.random.default_rng(5)
    background = (rng.random((H, W, 3)) * 60 + 80).astype(np.uint8)  # textured, static
    frames = np.repeat(background[None], T, axis=0)
    for t in range(T):
        frames[t, 16:28, 4 + 4 * t : 16 + 4 * t] = (250, 250, 120)  # much brighter in grey
    return frames


def test_motion_masks_detect_moving_square():
    video = _moving_square()
    m = M.motion_masks(video)
    assert m.dtype == bool and m.shape == video.shape[:3]
    assert not m[0].any()  # the first frame only seeds the background
    for t in range(1, len(video)):
        ys, xs = np.nonzero(m[t])
        assert len(ys) > 20
        # motion stays on the square's rows and the columns it has swept (the running
        # background remembers where it was), up to its leading edge
        assert ys.min() >= 13 and ys.max() <= 30
        assert xs.min() >= 1 and xs.max() <= 16 + 4 * t + 2
        # the columns the square just moved into are detected
        assert m[t, 16:28, 12 + 4 * t : 16 + 4 * t].mean() > 0.9
    # the same clip as float in [0, 1] gives the same masks
    assert np.array_equal(M.motion_masks(torch.from_numpy(video).float() / 255), m)


def test_motion_masks_static_scene_is_empty():
    video = _moving_square()[:1].repeat(6, axis=0)
    assert not M.motion_masks(video).any()
    rng = np.random.default_rng(6)
    jitter = np.clip(video.astype(int) + rng.integers(-3, 4, video.shape), 0, 255).astype(np.uint8)
    assert not M.motion_masks(jitter).any()  # sensor-level noise is below the threshold


def test_iou_scores_hand_cases():
    pred = np.zeros((2, 1, 4), bool)
    target = np.zeros((2, 1, 4), bool)
    pred[0, 0, 0] = pred[1, 0, 1] = True
    target[0, 0, 0] = target[1, 0, 0] = target[1, 0, 2] = True
    # spatial: pred {0,1} vs target {0,2} -> 1/3
    assert M.spatial_iou(pred, target).value == pytest.approx(1 / 3)
    # spatiotemporal: frame 0 -> 1, frame 1 -> 0
    r = M.spatiotemporal_iou(pred, target)
    assert r.per_frame == pytest.approx((1.0, 0.0)) and r.value == pytest.approx(0.5)
    # weighted: pred [.5,.5,0,0], target [1,0,.5,0] -> min sum .5 / max sum 2
    assert M.weighted_spatial_iou(pred, target).value == pytest.approx(0.25)
    empty = np.zeros((2, 3, 3), np.uint8)
    for fn in (M.spatial_iou, M.spatiotemporal_iou, M.weighted_spatial_iou):
        assert fn(empty, empty).value == 1.0
    assert "empty" in M.spatial_iou(empty, empty).convention


def test_physics_iq_mse_and_scores():
    a = np.zeros((2, 2, 2, 3))
    b = a.copy()
    b[1] = 0.5
    r = M.physics_iq_mse(b, a)
    assert r.per_frame == pytest.approx((0.0, 0.25)) and r.value == pytest.approx(0.125)

    video = _moving_square()
    scores = M.physics_iq_scores(video, video)
    assert set(scores) == {"spatial_iou", "spatiotemporal_iou", "weighted_spatial_iou", "mse"}
    assert all(scores[k].value == 1.0 for k in ("spatial_iou", "spatiotemporal_iou", "weighted_spatial_iou"))
    assert scores["mse"].value == 0.0
    assert "alpha=0.3" in scores["spatial_iou"].convention
    static = video[:1].repeat(len(video), axis=0)
    scores = M.physics_iq_scores(static, video, target_take2=video)
    assert scores["spatial_iou"].value == 0.0  # predicted nothing moving, target moved
    assert scores["physical_variance_spatial_iou"].value == 1.0
    json.dumps({k: v.to_dict() for k, v in scores.items()}, allow_nan=False)


# ---------------------------------------------------------------- bad inputs


def test_errors_name_the_input_and_expectation():
    x = np.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"pred: expected a video \[T, H, W, C\]"):
        M.psnr(x[0], x[0])
    with pytest.raises(ValueError, match="channels-first"):
        M.ssim(np.zeros((2, 3, 8, 8)), np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(x, x[:1])
    with pytest.raises(ValueError, match=r"target: expected floats in \[0, 1\]"):
        M.mse_mae_openstl(x, x - 0.5)
    with pytest.raises(ValueError, match=r"pred: expected floats in \[0, 1\]"):
        M.ssim(x + 2.0, x)
    with pytest.raises(ValueError, match="NaN"):
        M.psnr(x * np.nan, x)
    with pytest.raises(ValueError, match="dtype"):
        M.psnr(x.astype(np.int32), x)
    with pytest.raises(TypeError, match="pred"):
        M.psnr(x.tolist(), x)
    with pytest.raises(ValueError, match=r"video: expected a video"):
        M.motion_masks(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"pred_masks: expected object-id masks \[T, H, W\]"):
        M.object_iou(np.zeros((2, 4, 4, 1), int), np.zeros((2, 4, 4), int))
    with pytest.raises(ValueError, match="integer object ids"):
        M.object_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 4), int))
    with pytest.raises(ValueError, match="ids"):
        M.object_iou(np.zeros((2, 4, 4), int), np.zeros((2, 4, 4), int), ids=[0, 1])
    with pytest.raises(ValueError, match="target_masks: expected motion masks"):
        M.spatial_iou(np.zeros((2, 4, 4), bool), np.zeros((4, 4), bool))
