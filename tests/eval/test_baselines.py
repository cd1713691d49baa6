"""The predictor interface and the baselines: a hand-computed tiny case, the registry, bad inputs.

Legend: T frames, H height, W width.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from kinema.eval import predictor as P
from kinema.eval.baselines import CopyLastFrame, LinearObjectMotion, ZeroMotion
from kinema.eval.physics_alignment import score_prediction
from kinema.eval.predictor import OracleInfo, PredictionRequest, get_predictor, predict_checked

GREY, RED = np.array([100, 100, 100]), np.array([220, 30, 30])
INFO = [dict(id=1, name="floor", kind="static", colour="grey", rgb=[0.39, 0.39, 0.39]),
        dict(id=2, name="red_box", kind="dynamic", colour="red", rgb=[0.86, 0.12, 0.12])]


def _square_clip(T=4, H=8, W=8):
    """A 2x2 red square on grey moving one column per frame: at columns t, t+1 in frame t."""
    f = np.tile(GREY.astype(np.uint8), (T, H, W, 1))
    m = np.ones((T, H, W), np.uint8)
    for t in range(T):
        f[t, 3:5, t : t + 2] = RED
        m[t, 3:5, t : t + 2] = 2
    return f, m


def _request(f, m, context=2):
    T = len(f)
    return PredictionRequest(
        context=f[:context], num_frames=T - context, fps=16.0, camera="front",
        oracle=OracleInfo(scenario="none", seed=0, size=f.shape[1], policy=None, context_masks=m[:context],
                          context_objects=np.zeros((context, 2, 13)), objects_info=INFO))


def test_copy_last_scores_what_a_hand_computation_gives():
    f, m = _square_clip()
    req = _request(f, m)
    pred = predict_checked(CopyLastFrame(), req)
    np.testing.assert_array_equal(pred, np.stack([f[1], f[1]]))
    s = score_prediction(pred, f[2:], req.context, m[:2], m[2:], INFO)
    # frame 2: the square drawn one column behind: 4 of 64 pixels wrong; frame 3: two columns behind: 8 wrong
    err = float(((RED - GREY) ** 2).sum()) / 255.0**2  # squared error of one wrong pixel, channels summed
    mse = [4 * err / (64 * 3), 8 * err / (64 * 3)]
    psnr = [10 * math.log10(1 / e) for e in mse]
    assert s["psnr_per_frame"] == pytest.approx(psnr, abs=1e-9)
    assert s["psnr"] == pytest.approx(np.mean(psnr), abs=1e-9)
    # object IoU: frame 2 overlaps one column of the two (2 px of 6), frame 3 none; mean over frames
    assert s["iou_per_frame"] == pytest.approx([1 / 3, 0.0])
    assert s["iou"] == pytest.approx(1 / 6)
    assert s["segmenter_gt_iou"] == 1.0


def test_zero_motion_is_the_context_mean_and_linear_extrapolates_the_motion():
    f, m = _square_clip()
    req = _request(f, m)
    mean = np.round((f[0].astype(float) + f[1]) / 2).astype(np.uint8)
    np.testing.assert_array_equal(ZeroMotion().predict(req), np.stack([mean, mean]))
    np.testing.assert_array_equal(ZeroMotion().predict(_request(f, m, context=1)), CopyLastFrame().predict(_request(f, m, 1)))
    # one column per frame, fitted on the two context frames: the future exactly
    np.testing.assert_array_equal(LinearObjectMotion().predict(req), f[2:])
    # with one context frame there is no velocity: linear is copy-last
    one = _request(f, m, context=1)
    np.testing.assert_array_equal(LinearObjectMotion().predict(one), CopyLastFrame().predict(one))


def test_requests_and_predictions_are_checked():
    f, m = _square_clip()
    with pytest.raises(ValueError, match="context: expected uint8"):
        PredictionRequest(context=f.astype(np.float32), num_frames=2, fps=16.0, camera="front")
    with pytest.raises(ValueError, match="actions: expected one row per frame"):
        PredictionRequest(context=f[:2], num_frames=2, fps=16.0, camera="front", actions=np.zeros((3, 10), np.float32))
    with pytest.raises(ValueError, match="given: expected 1..2 real frames at the start of context, got 3"):
        PredictionRequest(context=f[:2], num_frames=2, fps=16.0, camera="front", given=3)

    class Wrong:
        name, uses_oracle = "wrong", False

        def predict(self, req):
            return np.zeros((1, 8, 8, 3), np.uint8)

    with pytest.raises(ValueError, match="predictor 'wrong' returned uint8 \\(1, 8, 8, 3\\); expected uint8 \\(2, 8, 8, 3\\)"):
        predict_checked(Wrong(), _request(f, m))


def test_registry_names_baselines_and_explains_missing_model_loaders(tmp_path: Path, monkeypatch):
    assert get_predictor("baseline:copy_last").name == "copy_last"
    with pytest.raises(ValueError, match="unknown baseline 'nope'; expected one of: copy_last"):
        get_predictor("baseline:nope")
    with pytest.raises(ValueError, match="no such checkpoint folder"):
        get_predictor(str(tmp_path / "missing"))
    (tmp_path / "config.json").write_text('{"kind": "toy_world_model"}')
    with pytest.raises(ValueError, match="no world-model loader registered yet for kind 'toy_world_model'"):
        get_predictor(str(tmp_path))
    # the hook the model issue uses: register a loader for a kind, then a checkpoint of that kind loads
    monkeypatch.setattr(P, "_MODEL_LOADERS", {})
    P.register_model_loader("toy_world_model", lambda path, **kw: CopyLastFrame())
    assert isinstance(get_predictor(str(tmp_path)), CopyLastFrame)


def test_predictors_that_batch_get_independent_requests_in_one_call():
    f, m = _square_clip()

    class Batching(CopyLastFrame):
        calls = 0

        def predict_batch(self, requests):
            self.calls += 1
            return [self.predict(r) for r in requests]

    p = Batching()
    outs = P.predict_all(p, [_request(f, m), _request(f, m, context=1), _request(f, m, context=3)])
    assert p.calls == 1 and [len(o) for o in outs] == [2, 3, 1]
    p.predict_batch = lambda requests: []
    with pytest.raises(ValueError, match="returned 0 predictions for 2 requests"):
        P.predict_all(p, [_request(f, m), _request(f, m)])
