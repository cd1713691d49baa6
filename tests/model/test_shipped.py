"""The shipped world model reproduces its saved outputs, and the demo runs on it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.model.demo import REGRESSION, demo, regression_outputs

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "world-model-small"


def test_shipped_world_model_reproduces_its_outputs():
    expected = json.loads((SHIPPED / "expected.json").read_text())
    assert expected["clip"] == REGRESSION
    got = regression_outputs(SHIPPED)
    assert got["psnr"] == pytest.approx(expected["psnr"], abs=0.3)
    assert got["mean"] == pytest.approx(expected["mean"], abs=1.0)
    assert np.allclose(got["frame_means"], expected["frame_means"], atol=2.0)
    r, want = got["reasoner"], expected["reasoner"]
    assert r["questions"] == want["questions"]
    assert np.allclose(r["truth_logprobs"], want["truth_logprobs"], atol=0.05)
    same = sum(a == b for a, b in zip(r["answers"], want["answers"]))
    assert same >= len(want["answers"]) - 1  # greedy text; one near-tie may flip on another CPU


def test_demo_runs_and_scores(tmp_path, capsys):
    scores = demo(tmp_path, SHIPPED, num_steps=4, device="cpu")
    # the reasoner is asked about the whole 6 s episode, as it trained, not the 2 s forward-dynamics clip
    assert "the reasoner on the whole episode (6 s" in capsys.readouterr().out
    assert set(scores) == {"world model", "copy last frame"}
    for s in scores.values():
        assert np.isfinite(s["psnr"]) and 0 <= s["iou"] <= 1
    assert (tmp_path / "forward_dynamics.mp4").stat().st_size > 0
    assert (tmp_path / "forward_dynamics.png").stat().st_size > 0


def test_the_shipped_inverse_dynamics_calibration_fits_the_shipped_embodiments():
    from kinema.model.calibration import CALIBRATION_SEED, ActionCalibration
    from kinema.model.config import WorldModelConfig

    cal = ActionCalibration.beside(SHIPPED, "inverse_dynamics")
    cfg = WorldModelConfig.from_dict(json.loads((SHIPPED / "config.json").read_text())["model"])
    dims = {e.name: e.dim for e in cfg.embodiments}
    assert set(cal.scale) == {"single_arm", "camera"}
    assert all(len(cal.scale[name]) == dims[name] for name in cal.scale)
    assert cal.fit["seed"] == CALIBRATION_SEED and cal.fit["draws"] == 16
    # one line for three tasks lifted push's still gripper: the arm's translation and gripper stay raw
    scale, offset = np.array(cal.scale["single_arm"]), np.array(cal.offset["single_arm"])
    assert (scale[[0, 1, 2, 9]] == 1).all() and (offset[[0, 1, 2, 9]] == 0).all()
    assert ActionCalibration.beside(SHIPPED, "policy") is None  # tried, not shipped (BENCHMARKS.md)


def test_the_shipped_checkpoint_has_inverse_dynamics_own_adapter():
    """Trained alone on inverse dynamics (BENCHMARKS.md, "Inverse dynamics' own adapter"): present and trained."""
    from kinema.train.checkpoint import load_pretrained

    raw, state = load_pretrained(SHIPPED)
    assert raw["model"]["inverse_adapter"] == 16
    sites = [k for k in state if ".gen.inverse." in k]
    assert len(sites) == 6 * 4 * 2  # every layer's four projections, A and B
    assert all(state[k].float().abs().sum() > 0 for k in sites if k.endswith(".B"))  # moved from its zero start


def test_the_shipped_arm_has_inverse_dynamics_adapters_of_its_own():
    """The arm's own adapters (BENCHMARKS.md, "The arm's own inverse-dynamics adapters"): both experts', trained on
    from the shared ones, which the camera keeps."""
    from kinema.train.checkpoint import load_pretrained

    raw, state = load_pretrained(SHIPPED)
    assert raw["model"]["inverse_own"] == ["single_arm"]
    own = [k for k in state if ".inverse_0." in k]
    assert {k.split(".")[3] for k in own} == {"gen", "und"} and len(own) == 2 * 6 * 4 * 2
    assert all(k.replace(".inverse_0.", ".inverse.") in state for k in own)
    still = {k for k in own if torch.equal(state[k], state[k.replace(".inverse_0.", ".inverse.")])}
    # trained away from the shared start, all but what nothing reads: the last layer's reasoner output (only its K/V
    # are read), whose B stays at its zero start in the shared adapters too
    assert still == {f"backbone.layers.5.und.inverse_0.{p}.B" for p in ("down", "gate_up", "proj")}
