"""Build randomized MuJoCo scenes as MJCF text, keeping a record of every object.

A world's `build(rng)` uses a `SceneBuilder` to add the floor, objects and
cameras; the builder writes the XML and the `objects_info` list that captions,
masks and questions refer to. Units: metres, kilograms, seconds; z is up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Named colours, far apart in RGB, so captions can name them and a segmenter can
# tell them apart at 64x64. Neutral tones are kept for fixed structures.
PALETTE = {
    "red": (0.86, 0.13, 0.13),
    "green": (0.16, 0.70, 0.22),
    "blue": (0.13, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.98, 0.50, 0.05),
    "purple": (0.55, 0.20, 0.80),
    "cyan": (0.05, 0.80, 0.85),
    "magenta": (0.92, 0.20, 0.70),
    "white": (0.97, 0.97, 0.97),
    "black": (0.08, 0.08, 0.08),
}
CHROMATIC = [c for c in PALETTE if c not in ("white", "black")]  # the colours movable objects wear
SHAPE_NOUN = {"box": "box", "sphere": "ball", "cylinder": "cylinder", "capsule": "capsule"}


def cross3(a, b) -> np.ndarray:
    """a x b of two 3-vectors, written out: np.cross costs ~50 us a call at this size, and the worlds call it every
    frame (the same products and differences, so the same bits)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def look_at_xyaxes(pos, target) -> list[float]:
    """MuJoCo camera `xyaxes` for a camera at `pos` looking at `target`, z up."""
    fwd = np.asarray(target, float) - np.asarray(pos, float)
    fwd /= np.linalg.norm(fwd)
    x = cross3(fwd, (0.0, 0.0, 1.0))
    if np.linalg.norm(x) < 1e-6:  # looking straight down: pick +x as the image right
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = cross3(x, fwd)
    return [*x, *y]


def fmt(v) -> str:
    return " ".join(f"{float(a):.6g}" for a in np.atleast_1d(v))


def quat_from_axis_angle(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * axis)])


@dataclass
class Scene:
    xml: str
    objects: list[dict]  # objects_info; object id i+1 is objects[i]
    cameras: list[str]
    params: dict = field(default_factory=dict)
    init_qvel: dict = field(default_factory=dict)  # body name -> 6-vector (lin, ang) set at reset


class SceneBuilder:
    """Accumulates MJCF pieces. Object ids start at 1 (0 = nothing in the mask)."""

    def __init__(self, rng: np.random.Generator, timestep: float = 0.002):
        self.rng = rng
        self.timestep = timestep
        self.body_xml: list[str] = []
        self.extra_xml: list[str] = []  # actuators, contact excludes...
        self.camera_xml: list[str] = []
        self.cameras: list[str] = []
        self.objects: list[dict] = []
        self._free_colours = list(PALETTE)
        rng.shuffle(self._free_colours)
        self.params: dict = {}

    # ---- colours -------------------------------------------------------------
    def colour(self, name: str | None = None) -> tuple[str, tuple[float, float, float]]:
        """A distinct palette colour (jittered slightly), never reused in a scene."""
        if name is None:
            name = next(c for c in self._free_colours if c not in ("white", "black"))
        self._free_colours.remove(name)
        rgb = np.clip(np.asarray(PALETTE[name]) + self.rng.uniform(-0.04, 0.04, 3), 0, 1)
        return name, tuple(float(c) for c in rgb)

    def _register(self, name, kind, shape, colour, rgb, size, mass=None, friction=None, **extra) -> int:
        oid = len(self.objects) + 1
        self.objects.append(
            dict(id=oid, name=name, kind=kind, shape=shape, colour=colour, rgb=list(rgb),
                 size=[float(s) for s in np.atleast_1d(size)], mass=mass, friction=friction, **extra)
        )
        return oid

    # ---- pieces --------------------------------------------------------------
    def floor(self, colour="grey", rgb=None, friction=1.0, name="floor", checker=False) -> int:
        """The ground plane; a checker pattern gives a moving camera texture to track."""
        shade = self.rng.uniform(0.45, 0.62)
        rgb = rgb or (shade, shade, shade * self.rng.uniform(0.95, 1.05))
        material = ""
        if checker:
            dark = tuple(0.7 * c for c in rgb)
            self.extra_xml.append(
                f'<asset><texture name="grid" type="2d" builtin="checker" width="64" height="64" rgb1="{fmt(rgb)}" '
                f'rgb2="{fmt(dark)}"/><material name="grid" texture="grid" texrepeat="4 4" texuniform="true"/></asset>'
            )
            material = ' material="grid"'
        self.body_xml.append(
            f'<geom name="{name}" type="plane" size="30 30 10" rgba="{fmt(rgb)} 1"{material} friction="{friction:.4g} 0.005 0.0001"/>'
        )
        return self._register(name, "static", "plane", colour, rgb, [30, 30], friction=friction)

    def static_box(self, name, pos, size, quat=(1, 0, 0, 0), rgb=(0.75, 0.65, 0.5), colour="wooden", friction=1.0,
                   collide: bool = True) -> int:
        """collide=False: seen but never touched (a seesaw's pivot, which must not hold the hinged plank level)."""
        ghost = '' if collide else ' contype="0" conaffinity="0"'
        self.body_xml.append(
            f'<geom name="{name}" type="box" pos="{fmt(pos)}" size="{fmt(size)}" quat="{fmt(quat)}" '
            f'rgba="{fmt(rgb)} 1" friction="{friction:.4g} 0.005 0.0001"{ghost}/>'
        )
        return self._register(name, "static", "box", colour, rgb, size, friction=friction)

    def static_geoms(self, name, geoms: list[str], rgb, colour) -> int:
        """One fixed structure made of several geoms (e.g. a curved track)."""
        self.body_xml.append(f'<body name="{name}">' + "".join(geoms) + "</body>")
        return self._register(name, "static", "compound", colour, rgb, [0.0])

    def free_object(self, shape, size, pos, quat=(1, 0, 0, 0), mass=None, friction=None,
                    colour=None, condim=3, name=None) -> int:
        """A free rigid body (6-DoF). size: box half-extents / sphere radius / cylinder (radius, half-height)."""
        colour, rgb = self.colour(colour)
        size = np.atleast_1d(np.asarray(size, float))
        mass = float(mass if mass is not None else self.rng.uniform(0.1, 1.0))
        friction = float(friction if friction is not None else self.rng.uniform(0.4, 1.0))
        noun = SHAPE_NOUN[shape]
        name = name or f"{colour}_{noun}"
        self.body_xml.append(
            f'<body name="{name}" pos="{fmt(pos)}" quat="{fmt(quat)}"><freejoint name="{name}"/>'
            f'<geom name="{name}" type="{shape}" size="{fmt(size)}" mass="{mass:.6g}" rgba="{fmt(rgb)} 1" '
            f'friction="{friction:.4g} 0.005 0.0001" condim="{condim}"/></body>'
        )
        return self._register(name, "dynamic", shape, colour, rgb, size, mass, friction, noun=noun)

    def raw_body(self, xml: str, name: str, kind: str, shape: str, colour: str, rgb, size, mass=None, **extra) -> int:
        """A body written by the world itself (articulated pieces, robots)."""
        self.body_xml.append(xml)
        return self._register(name, kind, shape, colour, rgb, size, mass, **extra)

    def lights(self):
        """Random key light direction and strength, plus a dim headlight."""
        az, el = self.rng.uniform(0, 2 * np.pi), self.rng.uniform(np.radians(45), np.radians(80))
        d = -np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        k = self.rng.uniform(0.55, 0.85)
        self.params["light"] = dict(azimuth=float(az), elevation=float(el), diffuse=float(k))
        self.body_xml.append(
            f'<light name="key" directional="true" castshadow="false" pos="0 0 4" dir="{fmt(d)}" '
            f'diffuse="{k:.4g} {k:.4g} {k:.4g}" specular="0.1 0.1 0.1"/>'
        )
        return self.rng.uniform(0.3, 0.45)  # ambient level, used in <visual>

    def camera(self, name, target, distance, azimuth_deg, elevation_deg, jitter_deg=2.0, fovy=45.0):
        """A fixed camera on a sphere around `target`, with a small seeded jitter."""
        az = np.radians(azimuth_deg + self.rng.uniform(-jitter_deg, jitter_deg))
        el = np.radians(elevation_deg + self.rng.uniform(-jitter_deg, jitter_deg))
        dist = distance * self.rng.uniform(0.97, 1.03)
        target = np.asarray(target, float)
        pos = target + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        self.camera_xml.append(
            f'<camera name="{name}" mode="fixed" pos="{fmt(pos)}" xyaxes="{fmt(look_at_xyaxes(pos, target))}" fovy="{fovy:.4g}"/>'
        )
        self.cameras.append(name)

    def four_views(self, target, distance, fovy=45.0):
        """The four fixed views of the physics-alignment protocol."""
        base = self.rng.uniform(-10, 10)
        for name, az, el in (("front", -90, 12), ("side", 0, 12), ("oblique", -45, 35), ("top", -90, 75)):
            self.camera(name, target, distance, base + az, el, fovy=fovy)

    def build(self, **init_qvel) -> Scene:
        ambient = self.lights()
        xml = f"""<mujoco model="kinema">
  <compiler angle="radian"/>
  <option timestep="{self.timestep:.8g}" gravity="0 0 -9.81"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="{ambient:.4g} {ambient:.4g} {ambient:.4g}" diffuse="0.25 0.25 0.25" specular="0 0 0"/>
  </visual>
  <worldbody>
    {"".join(self.camera_xml)}
    {"".join(self.body_xml)}
  </worldbody>
  {"".join(self.extra_xml)}
</mujoco>"""
        return Scene(xml=xml, objects=self.objects, cameras=list(self.cameras), params=self.params, init_qvel=init_qvel)
