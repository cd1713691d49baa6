"""The tabletop worlds: the expert succeeds, random mostly fails, streams have the documented layout."""

from __future__ import annotations

import kinema  # noqa: F401  (first: it picks MuJoCo's EGL backend, which must happen before mujoco is imported)
import mujoco
import numpy as np
import pytest

from kinema.worlds.rollout import rollout, substeps_per_frame
from kinema.worlds.tabletop import TABLETOP_WORLDS, GantryAgent

SEEDS = range(50)
IDS = [w.name for w in TABLETOP_WORLDS]


def success_rate(world, policy: str) -> float:
    return float(np.mean([rollout(world, s, policy=policy, render=False).info["outcome"]["success"] for s in SEEDS]))


@pytest.mark.parametrize("world_cls", TABLETOP_WORLDS, ids=IDS)
def test_expert_succeeds_random_mostly_fails(world_cls):
    world = world_cls()
    expert = success_rate(world, "expert")
    random = success_rate(world, "random")
    assert expert >= 0.9, f"{world.name}: expert succeeded on {expert:.0%} of {len(SEEDS)} seeds"
    assert random <= 0.3, f"{world.name}: random succeeded on {random:.0%} of {len(SEEDS)} seeds"


def test_the_noisy_expert_succeeds_and_fails_under_one_policy(tmp_path):
    """noisy_expert:EPS episodes: at EPS 0 exactly the expert's; at 0.45 the hand's steps are replaced by full
    random steps about that often, and the outcomes split, so success questions are not "was it the expert";
    the episode records its policy. A bad policy string fails before anything is simulated."""
    from kinema.worlds.generate import generate
    from kinema.worlds.tabletop import MAX_STEP, Push

    world = Push()
    a, b = rollout(world, 3, policy="expert", render=False), rollout(world, 3, policy="noisy_expert:0", render=False)
    assert np.array_equal(a.action, b.action)
    runs = [rollout(world, s, policy="noisy_expert:0.45", render=False) for s in range(12)]
    steps = np.concatenate([np.linalg.norm(r.action[:, :3], axis=1) for r in runs])
    assert 0.3 < np.mean(np.isclose(steps, MAX_STEP, rtol=1e-4)) < 0.6
    outcomes = [r.info["outcome"]["success"] for r in runs]
    assert any(outcomes) and not all(outcomes)
    assert runs[0].info["policy"] == "noisy_expert:0.45"
    with pytest.raises(ValueError, match="unknown policy 'noisy_expert:2'"):
        generate("push", 1, 0, tmp_path / "out", policy="noisy_expert:2", progress=False)
    assert not (tmp_path / "out").exists()


def _is_rotation_6d(r6: np.ndarray, atol: float) -> None:
    c1, c2 = r6[..., :3], r6[..., 3:6]
    np.testing.assert_allclose(np.linalg.norm(c1, axis=-1), 1.0, atol=atol)
    np.testing.assert_allclose(np.linalg.norm(c2, axis=-1), 1.0, atol=atol)
    np.testing.assert_allclose(np.sum(c1 * c2, axis=-1), 0.0, atol=atol)


@pytest.mark.parametrize("policy", ["expert", "random"])
@pytest.mark.parametrize("world_cls", TABLETOP_WORLDS, ids=IDS)
def test_action_and_state_layout(world_cls, policy):
    world = world_cls()
    ep = rollout(world, 3, policy=policy, render=False)
    T = world.frames
    assert world.family == "tabletop" and world.robot_type == "kinema_gantry_arm"
    assert ep.action.shape == (T, 10) and ep.state.shape == (T, 10)
    assert ep.info["action_names"] == ["dx", "dy", "dz", "r11", "r21", "r31", "r12", "r22", "r32", "gripper"]
    assert len(ep.info["state_names"]) == 10
    assert np.isfinite(ep.action).all() and np.isfinite(ep.state).all()
    _is_rotation_6d(ep.action[:, 3:9], 1e-5)  # applied delta rotations
    _is_rotation_6d(ep.state[:, 3:9], 1e-5)  # measured end-effector rotations
    assert (ep.action[:, 9] >= 0).all() and (ep.action[:, 9] <= 1).all()
    assert (ep.state[:, 9] >= 0).all() and (ep.state[:, 9] <= 1).all()
    assert np.linalg.norm(ep.action[:, :3], axis=1).max() <= 0.03 + 1e-6  # the step limit
    # the end effector stays in (or, by tracking error, within a few mm of) the workspace
    assert np.abs(ep.state[:, :2]).max() < 0.33 and ep.state[:, 2].min() > 0.04 and ep.state[:, 2].max() < 0.36


@pytest.mark.parametrize("world_cls", TABLETOP_WORLDS, ids=IDS)
def test_render_masks_determinism_and_language(world_cls):
    world = world_cls()
    a = rollout(world, 7, size=64)
    b = rollout(world, 7, size=64)
    assert a.cameras == ["front", "side"]
    ids = {o["name"]: o["id"] for o in a.objects_info}
    robot = next(o for o in a.objects_info if o["kind"] == "robot")
    blocks = [o for o in a.objects_info if o["kind"] == "dynamic"]
    goals = [o for o in a.objects_info if o.get("noun") == "goal"]
    assert robot["name"] == "robot" and len(blocks) == (2 if world.name == "stack" else 1)
    assert len(goals) == (0 if world.name == "stack" else 1)
    for cam in a.cameras:
        assert a.frames[cam].shape == (world.frames, 64, 64, 3)
        seen = set(np.unique(a.masks[cam][0]).tolist())
        for o in [robot, *blocks, *goals]:
            assert o["id"] in seen, f"{o['name']} is not visible in camera {cam!r}"
        np.testing.assert_array_equal(a.frames[cam], b.frames[cam])
        np.testing.assert_array_equal(a.masks[cam], b.masks[cam])
    np.testing.assert_array_equal(a.state, b.state)
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.objects, b.objects)
    assert len(ids) <= world.max_objects

    # instruction, success question and caption agree with the outcome
    assert all(o["colour"] in a.task for o in blocks + goals)
    success = a.info["outcome"]["success"]
    qa = {q["question"]: q["answer"] for q in a.qa}
    assert qa["Did the robot succeed?"] == ("yes" if success else "no")
    assert success  # the expert on this seed
    assert world.scene_sentence(_scene(world, 7)) in a.caption


def _scene(world, seed):
    return world.build(np.random.default_rng(seed))


@pytest.mark.parametrize("world_cls", TABLETOP_WORLDS, ids=IDS)
def test_replaying_recorded_actions_reproduces_the_episode(world_cls):
    """The agent returns the action it applied: fed back open-loop, the actions redo the episode."""
    world = world_cls()
    ep = rollout(world, 11, render=False)
    scene = _scene(world, 11)
    model = mujoco.MjModel.from_xml_string(scene.xml)
    n = substeps_per_frame(world.fps)
    model.opt.timestep = 1.0 / (world.fps * n)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    agent = GantryAgent(model, data, scene, np.random.default_rng(0), "random", world.fps)
    for t in range(ep.length):
        agent.apply(ep.action[t])
        if t < ep.length - 1:
            for _ in range(n):
                mujoco.mj_step(model, data)
    for o in ep.objects_info:
        if o["kind"] == "dynamic":
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, o["name"])
            np.testing.assert_allclose(data.xpos[bid], ep.objects[-1, o["id"] - 1, :3], atol=1e-3)


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'teleoperator'.*expert, noisy_expert:EPS, random"):
        rollout(TABLETOP_WORLDS[0](), 0, policy="teleoperator", render=False, frames=2)


def test_action_clipping():
    """Steps beyond the limits are clipped, and the applied action says so."""
    world = TABLETOP_WORLDS[1]()
    scene = _scene(world, 0)
    model = mujoco.MjModel.from_xml_string(scene.xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    agent = GantryAgent(model, data, scene, np.random.default_rng(0), "expert", world.fps)
    big_turn = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])  # 90 degrees about z
    applied = agent.apply([1.0, 0, 0, *big_turn[:, 0], *big_turn[:, 1], 7.0])
    np.testing.assert_allclose(applied[:3], [0.03, 0, 0], atol=1e-9)
    r = np.column_stack([applied[3:6], applied[6:9], np.cross(applied[3:6], applied[6:9])])
    assert np.isclose(np.degrees(np.arccos((np.trace(r) - 1) / 2)), np.degrees(0.25))
    assert applied[9] == 1.0
    for _ in range(40):  # run into the workspace wall
        applied = agent.apply([0, 0, -0.03, 1, 0, 0, 0, 1, 0, 0])
    assert agent.p_target[2] == pytest.approx(0.05) and applied[2] == 0.0
