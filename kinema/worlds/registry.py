"""Every world kinema can simulate, by name."""

from __future__ import annotations

from kinema.worlds.camera_motion import CameraMotion
from kinema.worlds.physics import PHYSICS_WORLDS
from kinema.worlds.tabletop import TABLETOP_WORLDS
from kinema.worlds.world import World

WORLDS: dict[str, type[World]] = {w.name: w for w in (*PHYSICS_WORLDS, *TABLETOP_WORLDS, CameraMotion)}
DEFAULT_WORLD = "unstable_stack"


def get_world(name: str) -> World:
    if name not in WORLDS:
        raise ValueError(f"unknown scenario {name!r}; expected one of: {', '.join(WORLDS)}")
    return WORLDS[name]()
