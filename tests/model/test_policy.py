"""The world model's policy mode as a closed-loop policy (kinema.model.policy)."""

import numpy as np
import pytest

from kinema.eval.policy import Observation, get_policy
from kinema.eval.simulator import run_policy
from kinema.model.policy import WorldModelPolicy
from tests.model.helpers import SIZE


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def test_the_point_estimate_of_a_policy_chunk_is_the_mean_of_policy_samples(tiny_pipeline):
    p, ctx = tiny_pipeline, frames(5)
    history = np.random.default_rng(1).normal(size=(17, 10)).astype(np.float32)
    kw = dict(num_frames=17, context=ctx, actions=history, domain_name="single_arm", prompt="push the red block",
              num_steps=1)
    got = p.infer_actions(ctx, draws=3, mode="policy", **{k: v for k, v in kw.items() if k != "context"})
    runs = [p.run("policy", seed=s, **kw)["actions"] for s in range(3)]
    assert got.shape == (16, 10) and np.array_equal(got, np.mean(runs, 0))
    # the history rows are given, not generated: they come back as they went in
    np.testing.assert_allclose(got[:4], history[:4], atol=1e-5)
    with pytest.raises(ValueError, match="expected mode inverse_dynamics or policy"):
        p.infer_actions(ctx, draws=1, mode="forward_dynamics")


class Recorder(WorldModelPolicy):
    """Records every plan's given frames and history; plans a chunk whose row i is i (so acting order shows)."""

    def plan(self, frames, history, instruction, seed):
        self.calls.append((frames.copy(), history.copy(), instruction, seed))
        return np.arange(33 - len(frames), dtype=np.float32)[:, None].repeat(self.dim, 1)


def test_each_plan_sees_the_last_frames_and_the_actions_taken_between_them(tiny_pipeline):
    pol = Recorder(tiny_pipeline, replan=4)
    pol.calls = []
    seen = frames(14, seed=2)
    acts = [pol.act(Observation(t, "push it", {"front": seen[t], "side": seen[t] // 2}, None, None))
            for t in range(14)]
    assert [a[0] for a in acts] == [0, 1, 2, 3] * 3 + [0, 1]  # the first `replan` rows of each chunk, in order
    assert len(pol.calls) == 4  # at frames 0, 4, 8, 12
    for (given, history, instruction, _), t, Tc in zip(pol.calls, (0, 4, 8, 12), (1, 5, 9, 9)):
        np.testing.assert_array_equal(given, seen[t - Tc + 1 : t + 1])  # the first camera, the last Tc frames
        np.testing.assert_array_equal(history, np.stack(acts[t - Tc + 1 : t]) if Tc > 1 else np.zeros((0, 10)))
        assert instruction == "push it"
    assert len({c[3] for c in pol.calls}) == 4  # each plan its own noise
    pol.reset(0, "")
    with pytest.raises(ValueError, match="expected frame 0 next, got frame 3"):
        pol.act(Observation(3, "", {"front": seen[0]}, None, None))
    with pytest.raises(ValueError, match="camera 'top' not among the observation's front"):
        Recorder(tiny_pipeline, camera="top").act(Observation(0, "", {"front": seen[0]}, None, None))
    with pytest.raises(ValueError, match="carries no frames"):
        pol.act(Observation(0, "", None, None, None))


@pytest.mark.parametrize("bad, match", [(dict(context=4), "context: expected 1 \\+ 4j given frames below 33"),
                                        (dict(replan=0), "replan: expected 1 to 24 actions per plan"),
                                        (dict(draws=0), "draws and num_steps: expected at least 1")])
def test_bad_options_are_refused(tiny_pipeline, bad, match):
    with pytest.raises(ValueError, match=match):
        WorldModelPolicy(tiny_pipeline, **bad)


def test_a_world_model_checkpoint_acts_in_the_simulator_through_the_registry(saved):
    pol = get_policy(str(saved["model"]), device="cpu", draws=2, replan=6)
    assert pol.name.startswith("world-model-tiny@") and pol.name.endswith("_draws2_replan6")
    ep = run_policy("push", 3, pol, size=SIZE, frames=13)
    assert pol.plans == 3 and ep.info["policy"] == pol.name
    assert np.isfinite(ep.action).all() and ep.action.shape == (13, 10)


def test_a_policy_calibration_beside_the_checkpoint_goes_into_each_chunk_and_the_name(saved, tmp_path):
    import shutil

    from kinema.model.calibration import CALIBRATION_FILE, ActionCalibration

    for key in ("model", "video", "audio"):
        shutil.copytree(saved[key], tmp_path / saved[key].name)
    model = tmp_path / saved["model"].name
    raw = get_policy(str(model), device="cpu", draws=2)
    ctx, history = frames(5), np.zeros((4, 10), np.float32)
    want = raw.plan(ctx, history, "push it", seed=3)
    ActionCalibration({"single_arm": [2.0] * 10}, {"single_arm": [0.5] * 10}).save(
        model / CALIBRATION_FILE.format(mode="policy"))
    cal = get_policy(str(model), device="cpu", draws=2)
    np.testing.assert_allclose(cal.plan(ctx, history, "push it", seed=3), want * 2 + 0.5, atol=1e-5)
    assert cal.name != raw.name  # closed-loop episodes cached under the raw policy's name are not reused
    assert get_policy(str(model), device="cpu", draws=2, calibrated=False).name == raw.name


def test_a_plan_from_imagined_frames_is_inverse_dynamics_on_them(tiny_pipeline):
    """plan_from="frames": the policy mode imagines the window, inverse dynamics reads its actions back."""
    pol = WorldModelPolicy(tiny_pipeline, draws=2, plan_from="frames", frame_steps=2)
    ctx, history = frames(5), np.zeros((4, 10), np.float32)
    got = pol.plan(ctx, history, "push it", seed=3)
    actions = np.zeros((33, 10), np.float32)
    kw = dict(domain_name="single_arm", prompt="push it", fps=16.0)
    clip = tiny_pipeline.run("policy", seed=3, num_frames=33, context=ctx, actions=actions, num_steps=2, **kw)["frames"]
    want = tiny_pipeline.infer_actions(clip, draws=2, seed=3, **kw)[4:]
    assert got.shape == (28, 10) and np.array_equal(got, want)
    with pytest.raises(ValueError, match="plan_from: expected 'actions'"):
        WorldModelPolicy(tiny_pipeline, plan_from="pixels")
