"""Success judged from frames: the geometry, and agreement with the simulator on real episodes."""

import numpy as np

from kinema.eval.data import heldout_seed
from kinema.eval.policy import get_policy
from kinema.eval.simulator import run_policy
from kinema.eval.success import judge_episode, nearest_point, pixel_ray


def test_rays_through_a_projected_point_meet_at_it():
    K = np.array([[80.0, 0, 32], [0, 80.0, 32], [0, 0, 1]])
    point = np.array([0.1, -0.05, 0.03])
    rays = []
    for cam_pos in ([0.0, -1.0, 0.8], [1.0, 0.2, 0.6]):
        z = point - np.array(cam_pos)
        z /= np.linalg.norm(z)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        R = np.stack([x, np.cross(z, x), z])  # world -> camera rows: OpenCV x right, y down, z forward
        E = np.eye(4)
        E[:3, :3], E[:3, 3] = R, -R @ np.array(cam_pos)
        uvw = K @ (R @ point + E[:3, 3])
        rays.append(pixel_ray(K, E, uvw[:2] / uvw[2]))
    np.testing.assert_allclose(nearest_point(rays), point, atol=1e-9)


def test_frame_judge_agrees_with_the_simulator_on_push():
    for policy, expected in (("expert", True), ("random", False)):
        ep = run_policy("push", heldout_seed(0), get_policy(policy), size=64)
        assert ep.info["outcome"]["success"] is expected
        assert judge_episode(ep)["success"] is expected
