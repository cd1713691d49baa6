import json

import numpy as np
import pytest

from kinema.worlds.audio import synthesize_contacts
from kinema.worlds.physics import PHYSICS_WORLDS, FreeFall
from kinema.worlds.registry import WORLDS, get_world
from kinema.worlds.rollout import rollout

G = 9.81


@pytest.mark.parametrize("seed", range(6))
def test_free_fall_matches_half_g_t_squared_before_first_contact(seed):
    ep = rollout(FreeFall(), seed, render=False)
    dt = ep.info["timestep"]
    t = np.arange(ep.length) / ep.fps
    checked = 0
    for obj in ep.objects_info:
        if obj["kind"] != "dynamic":
            continue
        i = obj["id"] - 1
        touch = [e["time"] for e in ep.contacts if obj["id"] in (e["a"], e["b"])]
        first = touch[0] if touch else np.inf
        before = t < first - 2 * dt  # frames strictly before its first contact
        z0 = ep.objects[0, i, 2]
        z = ep.objects[before, i, 2]
        # MuJoCo's semi-implicit Euler gives z0 - g t^2 / 2 - g dt t / 2 exactly; allow that O(dt) term.
        tol = 0.5 * G * dt * t[before] + 1e-6
        assert np.all(np.abs(z - (z0 - 0.5 * G * t[before] ** 2)) <= tol)
        assert np.allclose(ep.objects[before, i, 9], -G * t[before], atol=1e-6)  # vz = -g t
        assert np.allclose(ep.objects[before, i, :2], ep.objects[0, i, :2], atol=1e-9)  # no drift sideways
        checked += before.sum()
    assert checked >= 5


def test_same_seed_gives_identical_episode_and_other_seed_differs():
    world = get_world("dominoes")
    a, b, c = rollout(world, 7, size=32), rollout(world, 7, size=32), rollout(world, 8, size=32)
    for cam in a.cameras:
        assert a.frames[cam].tobytes() == b.frames[cam].tobytes()
        assert a.masks[cam].tobytes() == b.masks[cam].tobytes()
    assert a.objects.tobytes() == b.objects.tobytes() and a.audio.tobytes() == b.audio.tobytes()
    assert json.dumps([a.contacts, a.qa, a.caption, a.info]) == json.dumps([b.contacts, b.qa, b.caption, b.info])
    assert a.frames["front"].tobytes() != c.frames["front"].tobytes()


@pytest.mark.parametrize("name", list(WORLDS))
def test_every_world_records_all_streams(name):
    world = get_world(name)
    ep = rollout(world, 3, size=32, frames=9)
    T = 9
    assert ep.length == T and ep.state.shape[0] == T and ep.action.shape == (T, len(world.action_names))
    assert ep.objects.shape == (T, world.max_objects, 13)
    assert len(ep.cameras) == (4 if world.family == "physics" else len(ep.cameras))
    for cam in ep.cameras:
        assert ep.frames[cam].shape == (T, 32, 32, 3) and ep.frames[cam].dtype == np.uint8
        assert ep.masks[cam].shape == (T, 32, 32)
        assert ep.intrinsics[cam].shape == (T, 3, 3) and ep.extrinsics[cam].shape == (T, 4, 4)
        R = ep.extrinsics[cam][:, :3, :3]
        assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-6)
    assert ep.audio.shape == (round(T / ep.fps * ep.sample_rate),) and ep.audio.dtype == np.float32
    assert ep.caption and ep.task
    types = {q["type"] for q in ep.qa}
    assert {"count", "first_collision_time", "plausibility"} <= types
    # every movable object is visible in at least one view of the first frame
    seen = set(np.unique(np.stack([ep.masks[c][0] for c in ep.cameras])))
    for o in ep.objects_info:
        if o["kind"] in ("dynamic", "articulated"):
            assert o["id"] in seen, f"{name}: {o['name']} not visible at frame 0"


def test_objects_project_where_the_masks_say():
    """Intrinsics and extrinsics agree with the renderer: an object's centre projects into its mask."""
    ep = rollout(get_world("stable_stack"), 1, size=64, frames=1)
    for cam in ep.cameras:
        K, E = ep.intrinsics[cam][0], ep.extrinsics[cam][0]
        for o in ep.objects_info:
            if o["kind"] != "dynamic":
                continue
            p = E @ np.append(ep.objects[0, o["id"] - 1, :3], 1.0)
            u, v, _ = K @ (p[:3] / p[2])
            ys, xs = np.nonzero(ep.masks[cam][0] == o["id"])
            if len(xs):
                assert abs(u - (xs.mean() + 0.5)) < 4 and abs(v - (ys.mean() + 0.5)) < 4, cam


@pytest.mark.parametrize("name,falls", [("stable_stack", False), ("unstable_stack", True)])
def test_stacks_do_what_their_name_says(name, falls):
    outcomes = [rollout(get_world(name), s, render=False).info["outcome"]["stack_falls"] for s in range(10)]
    assert sum(o == falls for o in outcomes) >= 9


def test_the_seesaw_tips_and_its_lower_end_is_the_one_recorded():
    # Until the pivot stopped colliding, its top face held the hinged plank level in every episode.
    for seed in range(8):
        ep = rollout(get_world("seesaw"), seed, render=False)
        out, ids = ep.info["outcome"], {o["name"]: o["id"] for o in ep.objects_info}
        assert abs(out["plank_angle_deg"]) > 5, seed
        w, x, y, z = ep.objects[-1, ids["plank"] - 1, 3:7]
        plus_x_end_z = 2 * (x * z - w * y)  # z of the plank's +x axis after rotation by the quaternion
        low = out["lower_end_object"]
        start_x = ep.objects[0, low - 1, 0]
        assert np.sign(start_x) == -np.sign(plus_x_end_z), seed  # that object started over the end now lower


def test_contact_sound_is_louder_for_larger_impulse_and_pitch_depends_on_object():
    small = dict(id=2, kind="dynamic", size=[0.03])
    big = dict(id=3, kind="dynamic", size=[0.12])
    floor = dict(id=1, kind="static", size=[1.0])
    objs = [floor, small, big]

    def sound(impulse, obj):
        ev = [dict(time=0.1, a=1, b=obj["id"], impulse=impulse)]
        return synthesize_contacts(ev, objs, 0.5, 16000, np.random.default_rng(0))

    assert np.sqrt(np.mean(sound(1.0, small) ** 2)) > np.sqrt(np.mean(sound(0.1, small) ** 2)) * 2

    def peak_hz(x):
        spec = np.abs(np.fft.rfft(x))
        spec[: int(300 * len(x) / 16000)] = 0  # ignore the floor's low thud
        return np.argmax(spec) * 16000 / len(x)

    assert peak_hz(sound(0.5, small)) > 2 * peak_hz(sound(0.5, big))


def test_impacts_are_recorded_with_a_sound():
    ep = rollout(FreeFall(), 0, render=False)
    assert ep.contacts and all(e["impulse"] > 0 for e in ep.contacts)
    start = int(ep.contacts[0]["time"] * ep.sample_rate)
    assert np.abs(ep.audio[: start - 10]).max() == 0 and np.abs(ep.audio[start:]).max() > 0.05


def test_unknown_scenario_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown scenario 'nope'.*free_fall"):
        get_world("nope")


def test_all_eight_physics_scenarios_exist():
    assert [w.name for w in PHYSICS_WORLDS] == [
        "free_fall", "tilted_slope", "u_slope", "stable_stack", "unstable_stack", "dominoes", "seesaw", "gyroscope"]


def first_collision(ep) -> str:
    return next(q["answer"] for q in ep.qa if q["type"] == "first_collision_time")


def test_a_stack_settling_is_not_a_collision():
    # This stable stack's boxes, placed 0.4 mm apart, settle with a recorded impact at 0.027 s.
    ep = rollout(get_world("stable_stack"), 1914837113, render=False)
    assert ep.contacts and all(e["resting"] for e in ep.contacts)
    assert first_collision(ep) == "there is no collision" and "collision" not in ep.caption


def test_a_ball_rolling_along_its_track_is_not_a_collision():
    ep = rollout(get_world("u_slope"), 0, render=False)
    assert len(ep.contacts) > 3 and all(e["resting"] for e in ep.contacts)  # hops over the track's joints
    assert first_collision(ep) == "there is no collision"


def test_first_collision_is_the_first_impact_of_bodies_that_came_together():
    ep = rollout(get_world("unstable_stack"), 1914837113, render=False)
    settle, fall = ep.contacts[0], next(e for e in ep.contacts if not e["resting"])
    assert settle["resting"] and settle["time"] < 0.05 < fall["time"]
    assert first_collision(ep) == f"{fall['time']:.2f} s"
