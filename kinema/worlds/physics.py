"""The eight rigid-body scenarios of the Cosmos 1 physics-alignment protocol.

Legend: T frames, K object slots; states [T, K, 13] as in kinema.data.episode.

Each scene is randomized from its seed (sizes, masses, colours, positions,
friction, lighting, camera jitter) and seen from four fixed views: front,
side, oblique and top.
"""

from __future__ import annotations

import numpy as np

from kinema.worlds.language import display, yes_no
from kinema.worlds.scene import SceneBuilder, fmt, quat_from_axis_angle
from kinema.worlds.world import World

SHAPES = ("box", "sphere", "cylinder")


def random_size(rng, shape) -> list[float]:
    if shape == "box":
        return list(rng.uniform(0.06, 0.12, 3))
    if shape == "sphere":
        return [rng.uniform(0.06, 0.11)]
    return [rng.uniform(0.06, 0.1), rng.uniform(0.06, 0.11)]  # cylinder radius, half-height


def half_height(shape, size) -> float:
    return size[2] if shape == "box" else size[0] if shape == "sphere" else size[1]


def random_quat(rng) -> np.ndarray:
    q = rng.normal(size=4)
    return q / np.linalg.norm(q)


def tilt_deg(quat: np.ndarray) -> float:
    """Angle between the body's z axis and the world's z axis."""
    w, x, y, z = quat
    return float(np.degrees(np.arccos(np.clip(1 - 2 * (x * x + y * y), -1, 1))))


def listing(objs) -> str:
    names = [display(o) for o in objs]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def count_word(n: int) -> str:
    return ["no", "one", "two", "three", "four", "five", "six", "seven", "eight"][n] if n <= 8 else str(n)


def dynamic(scene):
    return [o for o in scene.objects if o["kind"] == "dynamic"]


class FreeFall(World):
    name = "free_fall"
    description = "Objects are dropped from rest onto the floor."

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor()
        n = int(rng.integers(1, 4))
        for i in range(n):
            shape = SHAPES[int(rng.integers(3))]
            size = random_size(rng, shape)
            x = (i - (n - 1) / 2) * 0.36 + rng.uniform(-0.04, 0.04)
            pos = [x, rng.uniform(-0.08, 0.08), rng.uniform(0.3, 0.8) + max(size) * np.sqrt(3)]
            b.free_object(shape, size, pos, random_quat(rng))
        b.four_views(target=[0, 0, 0.4], distance=1.9)
        return b.build()

    def scene_sentence(self, scene):
        objs = dynamic(scene)
        return f"{count_word(len(objs)).capitalize()} object{'s' if len(objs) > 1 else ''}, {listing(objs)}, fall from rest onto the floor."


class TiltedSlope(World):
    name = "tilted_slope"
    description = "An object is released on a tilted slope."

    def build(self, rng):
        b = SceneBuilder(rng)
        floor = b.floor()
        theta = rng.uniform(np.radians(15), np.radians(35))
        half = np.array([0.5, 0.2, 0.02])
        up = np.array([np.cos(theta), 0, np.sin(theta)])  # along the ramp, uphill
        normal = np.array([-np.sin(theta), 0, np.cos(theta)])
        centre = np.array([0, 0, half[0] * np.sin(theta) + half[2] / np.cos(theta)])
        q_ramp = quat_from_axis_angle([0, 1, 0], -theta)
        # The ramp is slick; the object's friction decides (MuJoCo takes the larger of the two).
        b.static_box("ramp", centre, half, q_ramp, friction=0.05)
        shape = ("box", "sphere", "cylinder")[int(rng.integers(3))]
        size = random_size(rng, shape)
        if shape == "cylinder":  # lying on its side so it can roll down
            q = _qmul(q_ramp, quat_from_axis_angle([1, 0, 0], np.pi / 2))
            lift = size[0]
        else:
            q, lift = q_ramp, half_height(shape, size)
        pos = centre + rng.uniform(0.2, 0.35) * up + (half[2] + lift + 0.0002) * normal
        mu = rng.uniform(0.15, 0.8)
        b.free_object(shape, size, pos, q, friction=mu)
        b.params.update(slope_deg=float(np.degrees(theta)), friction=float(mu))
        b.four_views(target=[0, 0, 0.2], distance=1.5)
        return b.build()

    def outcome(self, scene, states, contacts, agent, fps):
        o = dynamic(scene)[0]
        travel = float(np.linalg.norm(states[-1, o["id"] - 1, :3] - states[0, o["id"] - 1, :3]))
        return dict(moves_down=travel > 0.05, travel_m=travel)

    def outcome_facts(self, scene, outcome):
        o = dynamic(scene)[0]
        verb = "slides" if o["shape"] == "box" else "rolls"
        s = f"{display(o).capitalize()} {verb} down the slope." if outcome["moves_down"] else f"{display(o).capitalize()} stays where it was put."
        return [(dict(type="outcome", question=f"Does {display(o)} move down the slope?"), yes_no(outcome["moves_down"]), s)]

    def scene_sentence(self, scene):
        return f"{display(dynamic(scene)[0]).capitalize()} is released near the top of a wooden slope tilted by {scene.params['slope_deg']:.0f} degrees."


def _qmul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


class USlope(World):
    name = "u_slope"
    description = "A ball rolls inside a U-shaped track."

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor()
        R, th, w = rng.uniform(0.5, 0.7), 0.02, 0.15
        centre = np.array([0, 0, R + 0.05])
        seg, span = 28, np.radians(75)
        da = 2 * span / seg
        geoms = []
        rgb = (0.78, 0.68, 0.52)
        for i in range(seg):
            a = -span + (i + 0.5) * da
            pos = centre + (R + th) * np.array([np.sin(a), 0, -np.cos(a)])
            q = quat_from_axis_angle([0, 1, 0], a)
            geoms.append(f'<geom type="box" pos="{fmt(pos)}" quat="{fmt(q)}" size="{R * da / 2 * 1.08:.5g} {w} {th}" '
                         f'rgba="{fmt(rgb)} 1" friction="1 0.005 0.0001"/>')
        b.static_geoms("track", geoms, rgb, "wooden")
        r = rng.uniform(0.06, 0.09)
        a0 = np.radians(rng.uniform(35, 65)) * (1 if rng.random() < 0.5 else -1)
        pos = centre + (R - r - 0.001) * np.array([np.sin(a0), 0, -np.cos(a0)])
        b.free_object("sphere", [r], pos, mass=rng.uniform(0.1, 1.0), friction=rng.uniform(0.5, 1.0))
        b.params.update(radius=float(R), release_deg=float(np.degrees(a0)))
        b.four_views(target=[0, 0, 0.3], distance=1.9)
        return b.build()

    def outcome(self, scene, states, contacts, agent, fps):
        o = dynamic(scene)[0]
        x = states[:, o["id"] - 1, 0]
        crossed = bool(np.any(np.sign(x) != np.sign(x[0])) and np.max(np.abs(x[np.sign(x) != np.sign(x[0])]), initial=0) > 0.1)
        vx = states[:, o["id"] - 1, 7]
        turns = int(np.sum((vx[1:] * vx[:-1] < 0) & (np.abs(x[1:]) > 0.05)))
        return dict(reaches_other_side=crossed, turns=turns)

    def outcome_facts(self, scene, outcome):
        o = dynamic(scene)[0]
        s = (f"{display(o).capitalize()} rolls through the bottom and up the other side"
             f"{', turning back ' + str(outcome['turns']) + ' times' if outcome['turns'] else ''}.")
        return [(dict(type="outcome", question=f"Does {display(o)} reach the other side of the track?"),
                 yes_no(outcome["reaches_other_side"]), s if outcome["reaches_other_side"] else None)]

    def scene_sentence(self, scene):
        return f"{display(dynamic(scene)[0]).capitalize()} is released on one side of a curved U-shaped wooden track."


class Stack(World):
    """A stack of boxes; stable stacks stay, unstable ones overhang their support and fall."""

    stable = True

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor()
        n = int(rng.integers(2, 5))
        base_hw = rng.uniform(0.07, 0.1)
        z, xy = 0.0, np.zeros(2)
        fall_level = int(rng.integers(1, n)) if not self.stable else -1
        direction = rng.uniform(0, 2 * np.pi)
        hws = [base_hw * rng.uniform(0.85, 1.05) for _ in range(n)]
        for i in range(n):
            hw, hh = hws[i], rng.uniform(0.05, 0.08)
            if i == fall_level:  # everything from here up overhangs the edge below
                d = hws[i - 1] * rng.uniform(1.15, 1.4)
                xy = xy + d * np.array([np.cos(direction), np.sin(direction)])
            elif i > 0:
                xy = xy + rng.uniform(-0.08, 0.08, 2) * hws[i - 1]
            yaw = rng.uniform(-0.2, 0.2) if self.stable else 0.0
            pos = [xy[0], xy[1], z + hh + 0.0002]
            b.free_object("box", [hw, hw, hh], pos, quat_from_axis_angle([0, 0, 1], yaw),
                          mass=rng.uniform(0.2, 1.0), friction=rng.uniform(0.6, 1.0))
            z += 2 * hh + 0.0004
        b.params.update(levels=n, overhang_level=fall_level)
        b.four_views(target=[0, 0, z / 2], distance=1.0 + 1.2 * z)
        return b.build()

    def outcome(self, scene, states, contacts, agent, fps):
        fell = False
        for o in dynamic(scene):
            s0, s1 = states[0, o["id"] - 1], states[-1, o["id"] - 1]
            fell |= bool(s1[2] < s0[2] - o["size"][2] or tilt_deg(s1[3:7]) > 30)
        return dict(stack_falls=fell)

    def outcome_facts(self, scene, outcome):
        s = "The stack topples and its boxes fall." if outcome["stack_falls"] else "The stack stays standing."
        return [(dict(type="stack_falls", question="Does the stack fall over?"), yes_no(outcome["stack_falls"]), s)]

    def scene_sentence(self, scene):
        objs = dynamic(scene)
        return f"A stack of {count_word(len(objs))} boxes, from the bottom: {listing(objs)}."


class StableStack(Stack):
    name = "stable_stack"
    description = "A stack of boxes resting on the floor."
    stable = True


class UnstableStack(Stack):
    name = "unstable_stack"
    description = "A stack of boxes whose upper part overhangs its support."
    stable = False


class Dominoes(World):
    name = "dominoes"
    description = "A row of dominoes; the first one is pushed."

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor()
        n = int(rng.integers(4, 7))
        t, wd, hh = rng.uniform(0.015, 0.02), rng.uniform(0.06, 0.08), rng.uniform(0.1, 0.14)
        spacing = 2 * hh * rng.uniform(0.45, 1.05)  # beyond a domino's height the chain breaks
        x0 = -(n - 1) / 2 * spacing
        tip = np.radians(rng.uniform(12, 18))  # the push: the first one starts past its tipping point
        for i in range(n):
            a = tip if i == 0 else 0.0
            pos = [x0 + i * spacing, 0.0, hh * np.cos(a) + t * np.sin(a) + 0.0002]
            b.free_object("box", [t, wd, hh], pos, quat_from_axis_angle([0, 1, 0], a),
                          mass=rng.uniform(0.05, 0.2), friction=rng.uniform(0.4, 0.8))
        first = b.objects[1]["name"]
        b.params.update(count=n, spacing=float(spacing), height=float(2 * hh), push_tilt_deg=float(np.degrees(tip)))
        b.four_views(target=[0, 0, hh], distance=0.9 + n * spacing * 0.9)
        return b.build(**{first: [0, 0, 0, 0, rng.uniform(1.0, 2.0), 0]})

    def outcome(self, scene, states, contacts, agent, fps):
        fallen = [tilt_deg(states[-1, o["id"] - 1, 3:7]) > 45 for o in dynamic(scene)]
        return dict(fallen=int(sum(fallen)), all_fall=all(fallen))

    def outcome_facts(self, scene, outcome):
        n = len(dynamic(scene))
        s = ("Every domino falls in turn." if outcome["all_fall"] else
             f"{count_word(outcome['fallen']).capitalize()} of the {count_word(n)} dominoes fall{'s' if outcome['fallen'] == 1 else ''}; the chain breaks.")
        return [(dict(type="outcome", question="Do all the dominoes fall?"), yes_no(outcome["all_fall"]), s),
                (dict(type="count_fallen", question="How many dominoes fall?"), str(outcome["fallen"]), None)]

    def scene_sentence(self, scene):
        objs = dynamic(scene)
        return f"A row of {count_word(len(objs))} dominoes ({listing(objs)}); the first one is pushed over."


class Seesaw(World):
    name = "seesaw"
    description = "A box drops onto one end of a seesaw with another box on the other end."

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor()
        pivot_h, L = 0.12, rng.uniform(0.42, 0.55)
        b.static_box("pivot", [0, 0, pivot_h / 2], [0.04, 0.12, pivot_h / 2], rgb=(0.45, 0.45, 0.5), colour="grey",
                     collide=False)
        colour, rgb = b.colour()
        plank_mass = rng.uniform(0.2, 0.5)
        b.raw_body(
            f'<body name="plank" pos="0 0 {pivot_h + 0.012:.4g}"><joint name="plank" type="hinge" axis="0 1 0" damping="0.002"/>'
            f'<geom type="box" size="{L:.4g} 0.1 0.012" mass="{plank_mass:.4g}" rgba="{fmt(rgb)} 1"/></body>',
            name="plank", kind="articulated", shape="box", colour=colour, rgb=rgb, size=[L, 0.1, 0.012],
            mass=plank_mass, noun="plank")
        side = 1 if rng.random() < 0.5 else -1
        hw1 = rng.uniform(0.05, 0.08)
        b.free_object("box", [hw1] * 3, [-side * (L - hw1 - 0.02), 0, pivot_h + 0.024 + hw1 + 0.0002],
                      mass=rng.uniform(0.2, 1.5))
        hw2 = rng.uniform(0.05, 0.08)
        drop = rng.uniform(0.25, 0.6)
        b.free_object("box", [hw2] * 3, [side * (L - hw2 - 0.02), 0, pivot_h + 0.024 + hw2 + drop],
                      mass=rng.uniform(0.2, 1.5))
        b.params.update(drop_height=float(drop), plank_half_length=float(L))
        b.four_views(target=[0, 0, 0.25], distance=1.6)
        return b.build()

    def outcome(self, scene, states, contacts, agent, fps):
        plank = next(o for o in scene.objects if o["name"] == "plank")
        w, x, y, z = states[-1, plank["id"] - 1, 3:7]
        # rotation about y: positive tips the +x end down
        angle = float(np.degrees(2 * np.arctan2(y, w)))
        resting, dropped = dynamic(scene)
        lower_x = 1.0 if angle > 0 else -1.0
        low = dropped if np.sign(states[0, dropped["id"] - 1, 0]) == lower_x else resting
        return dict(plank_angle_deg=angle, lower_end_object=low["id"])

    def outcome_facts(self, scene, outcome):
        by_id = {o["id"]: o for o in scene.objects}
        low = display(by_id[outcome["lower_end_object"]])
        return [(dict(type="outcome", question="Which end of the seesaw ends up lower?"),
                 f"the end where {low} started", f"The seesaw tips down on the side where {low} started.")]

    def scene_sentence(self, scene):
        resting, dropped = dynamic(scene)
        plank = next(o for o in scene.objects if o["name"] == "plank")
        return f"{display(dropped).capitalize()} drops onto one end of {display(plank)} of a seesaw while {display(resting)} rests on the other end."


class Gyroscope(World):
    name = "gyroscope"
    description = "A spinning top, tilted, spins and precesses on the floor."

    def build(self, rng):
        b = SceneBuilder(rng)
        b.floor(friction=rng.uniform(0.3, 0.8))
        colour, rgb = b.colour()
        r, hh = rng.uniform(0.06, 0.09), 0.012
        disc_z, tip = rng.uniform(0.06, 0.08), 0.006
        tilt = np.radians(rng.uniform(8, 25))
        axis_dir = rng.uniform(0, 2 * np.pi)
        q = quat_from_axis_angle([np.cos(axis_dir), np.sin(axis_dir), 0], tilt)
        mass = rng.uniform(0.1, 0.4)
        b.raw_body(
            f'<body name="top" pos="0 0 {tip + 0.0005:.4g}" quat="{fmt(q)}"><freejoint name="top"/>'
            f'<geom type="cylinder" pos="0 0 {disc_z:.4g}" size="{r:.4g} {hh}" mass="{mass:.4g}" rgba="{fmt(rgb)} 1"/>'
            f'<geom type="capsule" fromto="0 0 0 0 0 {disc_z + 0.05:.4g}" size="{tip}" mass="0.005" rgba="0.2 0.2 0.2 1"/></body>',
            name="top", kind="dynamic", shape="cylinder", colour=colour, rgb=rgb, size=[r, hh], mass=mass, noun="spinning top")
        spin = rng.uniform(50, 90)
        b.params.update(spin_rad_s=float(spin), tilt_deg=float(np.degrees(tilt)))
        b.four_views(target=[0, 0, 0.06], distance=0.7)
        return b.build(top=[0, 0, 0, 0, 0, spin])  # angular velocity in the body frame: about its own axis

    def outcome(self, scene, states, contacts, agent, fps):
        s = states[-1, 0 + dynamic(scene)[0]["id"] - 1]
        return dict(falls=tilt_deg(s[3:7]) > 60, final_tilt_deg=tilt_deg(s[3:7]), spin_rad_s=float(np.linalg.norm(s[10:13])))

    def outcome_facts(self, scene, outcome):
        s = "The top loses its spin and falls over." if outcome["falls"] else "The top keeps spinning while its axis precesses."
        return [(dict(type="outcome", question="Does the spinning top fall over?"), yes_no(outcome["falls"]), s)]

    def scene_sentence(self, scene):
        return f"{display(dynamic(scene)[0]).capitalize()} is set spinning on the floor with its axis tilted by {scene.params['tilt_deg']:.0f} degrees."


PHYSICS_WORLDS = (FreeFall, TiltedSlope, USlope, StableStack, UnstableStack, Dominoes, Seesaw, Gyroscope)
