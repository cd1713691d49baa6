"""The offscreen renderer: renderers of one size share a GL context, and each still draws its own scene."""

import mujoco
import numpy as np

from kinema.worlds.registry import get_world
from kinema.worlds.render import MultiCameraRenderer
from kinema.worlds.rollout import object_geom_map


def _renderer(world: str, seed: int, size: int = 32):
    scene = get_world(world).build(np.random.default_rng(seed))
    model = mujoco.MjModel.from_xml_string(scene.xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return MultiCameraRenderer(model, scene.cameras, size, object_geom_map(model, scene.objects)[0]), data


def test_renderers_of_one_size_alive_together_each_draw_their_own_scene():
    a, data_a = _renderer("free_fall", 0)
    alone_a = a.render(data_a)
    b, data_b = _renderer("free_fall", 1)  # same buffer size: the same GL context, made after a's
    alone_b = b.render(data_b)
    try:
        for _ in range(2):  # interleaved, each must still read back its own buffer
            for r, data, alone in ((a, data_a, alone_a), (b, data_b, alone_b)):
                rgb, masks = r.render(data)
                np.testing.assert_array_equal(rgb, alone[0])
                np.testing.assert_array_equal(masks, alone[1])
        assert not np.array_equal(alone_a[0], alone_b[0])
        assert alone_a[0].max() > 0 and alone_a[1].max() > 0  # a real image with objects in it
    finally:
        a.close()
        b.close()
    c, data_c = _renderer("free_fall", 0)  # after both closed, a new one in the kept context draws as before
    try:
        np.testing.assert_array_equal(c.render(data_c)[0], alone_a[0])
    finally:
        c.close()


def test_a_scene_without_round_geoms_draws_cylinder_sides_uncut_and_looks_the_same(monkeypatch):
    import kinema.worlds.render as render

    def frames(stacks):
        monkeypatch.setattr(render, "FLAT_SIDE_STACKS", stacks)
        r, data = _renderer("push", 0, size=64)  # boxes, cylinders (the arm) and the floor; no sphere
        try:
            return r.model.vis.quality.numstacks, r.render(data)
        finally:
            r.close()

    flat = render.FLAT_SIDE_STACKS
    stacks, (rgb, masks) = frames(flat)
    full_stacks, (rgb_full, masks_full) = frames(1000)
    assert stacks == flat < full_stacks
    assert rgb.max() > 0 and (masks > 0).any()
    assert (rgb != rgb_full).any(-1).mean() < 1e-3  # at most an edge pixel or two moves
    assert (masks != masks_full).mean() < 1e-3
    r, _ = _renderer("camera_motion", 0)  # spheres: their outline is drawn with numstacks rings, left as it is
    try:
        assert r.model.vis.quality.numstacks == full_stacks
    finally:
        r.close()
