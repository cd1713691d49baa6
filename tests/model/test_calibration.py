import shutil

import numpy as np
import pytest

from kinema.model.calibration import CALIBRATION_FILE, ActionCalibration
from tests.model.helpers import random_frames


def test_the_line_recovers_an_affine_map_and_gives_a_dimension_without_signal_its_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = np.stack([2.0 * x[:, 0] - 1.0,  # read exactly, scaled
                  0.5 * x[:, 1] + 0.1 * rng.normal(size=500),  # read, overconfident
                  3.0 + rng.normal(size=500)], 1)  # the estimate says nothing
    scale, offset = ActionCalibration.line(x, y)
    assert scale[0] == pytest.approx(2.0) and offset[0] == pytest.approx(-1.0)
    assert scale[1] == pytest.approx(0.5, abs=0.02)
    assert abs(scale[2]) < 0.1 and offset[2] == pytest.approx(y[:, 2].mean(), abs=0.1)
    # least squares: no other line has lower squared error on the data it was fit on
    err = ((x * scale + offset - y) ** 2).mean(0)
    assert (err <= ((x - y) ** 2).mean(0)).all() and (err <= y.var(0) + 1e-12).all()
    const = np.ones((10, 2))  # an estimate that never moves: scale 0, offset the targets' mean
    s, o = ActionCalibration.line(const, np.arange(20.0).reshape(10, 2))
    assert np.array_equal(s, [0, 0]) and np.allclose(o, [9, 10])
    with pytest.raises(ValueError, match=r"one shape \[N >= 2, A\]"):
        ActionCalibration.line(x, y[:, :2])


def test_apply_save_load_and_bad_files(tmp_path):
    cal = ActionCalibration({"single_arm": [0.5, 0.0]}, {"single_arm": [0.0, 1.0]}, fit={"seed": 101})
    a = np.array([[2.0, 7.0]], np.float32)
    assert np.array_equal(cal.apply("single_arm", a), [[1.0, 1.0]])
    assert cal.apply("camera", a) is a  # an embodiment it was not fit on passes unchanged
    with pytest.raises(ValueError, match="fit on 2 action dims, got 3"):
        cal.apply("single_arm", np.zeros((1, 3)))
    cal.save(tmp_path / CALIBRATION_FILE.format(mode="policy"))
    assert ActionCalibration.beside(tmp_path, "policy") == cal
    assert ActionCalibration.beside(tmp_path, "inverse_dynamics") is None
    (tmp_path / "bad.json").write_text('{"scale": {}}')
    with pytest.raises(ValueError, match="bad.json: expected an action calibration"):
        ActionCalibration.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="scale and offset of one equal length"):
        ActionCalibration({"single_arm": [1.0]}, {"single_arm": [0.0, 1.0]})
    with pytest.raises(ValueError, match="name different embodiments"):
        ActionCalibration({"single_arm": [1.0]}, {"camera": [0.0]})


def test_a_checkpoint_with_a_calibration_answers_inverse_dynamics_through_it(saved, tmp_path):
    from kinema.eval.predictor import PredictionRequest, get_predictor

    for key in ("model", "video", "audio"):  # the tokenizers sit beside the model
        shutil.copytree(saved[key], tmp_path / saved[key].name)
    model = tmp_path / saved["model"].name
    names = get_predictor(str(model), device="cpu").pipeline.config.embodiments[0].action_names
    req = PredictionRequest(context=random_frames(17), num_frames=0, fps=16.0, camera="front",
                            action_names=names, action_timing="after")
    raw = get_predictor(str(model), device="cpu", inverse_samples=2)
    want = raw.infer_actions(req)
    assert raw.calibration is None and np.array_equal(want, raw.action_draws(req, 2).mean(0))
    scale = np.linspace(0.0, 1.0, len(names))
    ActionCalibration({"single_arm": scale.tolist()}, {"single_arm": [0.25] * len(names)}).save(
        model / CALIBRATION_FILE.format(mode="inverse_dynamics"))
    cal = get_predictor(str(model), device="cpu", inverse_samples=2)
    assert np.allclose(cal.infer_actions(req), want * scale + 0.25, atol=1e-6)
    assert cal.sampling["calibration"]["scale"]["single_arm"] == scale.tolist()  # a run made otherwise is not resumed
    off = get_predictor(str(model), device="cpu", inverse_samples=2, calibrated=False)
    assert np.array_equal(off.infer_actions(req), want)
