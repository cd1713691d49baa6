"""Offscreen rendering of several cameras at once: RGB, object-id masks, camera parameters.

Legend: C cameras, H height, W width.

All cameras are drawn side by side into one offscreen buffer and read back with
a single glReadPixels, once for colour and once for segmentation; at 64x64 the
per-call overhead, not the pixels, is what costs.
"""

from __future__ import annotations

import mujoco
import numpy as np

# MuJoCo looks down its camera's -z with +y up; OpenCV looks down +z with +y down.
_MJ_TO_CV = np.diag([1.0, -1.0, -1.0])
# One GL context per buffer size for the life of the process: the first MjrContext made in a fresh context costs
# about 70 ms (the driver compiles its shaders), every later one about 2 ms, and an episode of 33 frames renders
# in about 100 ms (BENCHMARKS.md, "Worlds").
_GL: dict[tuple[int, int], object] = {}
# Geoms whose outline MuJoCo draws with `numstacks` latitude rings; a scene without them uses numstacks only to cut
# straight cylinder sides lengthwise, which llvmpipe pays for per triangle and the image hardly shows.
_ROUND = (mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_ELLIPSOID)
FLAT_SIDE_STACKS = 2


def _gl_context(width: int, height: int):
    from mujoco import gl_context  # the backend chosen by MUJOCO_GL

    if (width, height) not in _GL:
        _GL[width, height] = gl_context.GLContext(width, height)
    return _GL[width, height]


class MultiCameraRenderer:
    def __init__(self, model: mujoco.MjModel, cameras: list[str], size: int, geom_object: np.ndarray):
        """geom_object: int [ngeom] object id of every geom (0 = not an object)."""
        self.model, self.size, self.cameras = model, size, list(cameras)
        n = len(self.cameras)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, n * size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self._gl = _gl_context(n * size, size)
        if not np.isin(model.geom_type, _ROUND).any():
            # Tabletop episodes render 1.4x faster end to end; 1-3 edge pixels of 800k an episode move (BENCHMARKS.md).
            model.vis.quality.numstacks = min(model.vis.quality.numstacks, FLAT_SIDE_STACKS)
        self._gl.make_current()
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scn = mujoco.MjvScene(model, maxgeom=max(100, 4 * model.ngeom))
        self._scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self._scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._scn.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0
        self._opt, self._pert = mujoco.MjvOption(), mujoco.MjvPerturb()
        self._cams = []
        for name in self.cameras:
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
            if cam.fixedcamid < 0:
                raise ValueError(f"camera {name!r} is not in the scene")
            self._cams.append(cam)
        self._rect = mujoco.MjrRect(0, 0, n * size, size)
        self._buf = np.empty((size, n * size, 3), np.uint8)
        self._geom_object = np.asarray(geom_object, np.int64)

    def _draw(self, data, segment: bool) -> list[np.ndarray]:
        self._scn.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = segment
        self._scn.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = segment
        luts = []
        for i, cam in enumerate(self._cams):
            mujoco.mjv_updateScene(self.model, data, self._opt, self._pert, cam, mujoco.mjtCatBit.mjCAT_ALL, self._scn)
            if segment:  # segid i+1 is the i-th geom of this scene; map it to our object id
                lut = np.zeros(self._scn.ngeom + 1, np.uint8)
                for j in range(self._scn.ngeom):
                    g = self._scn.geoms[j]
                    if g.objtype == mujoco.mjtObj.mjOBJ_GEOM:
                        lut[g.segid + 1] = self._geom_object[g.objid]
                luts.append(lut)
            mujoco.mjr_render(mujoco.MjrRect(i * self.size, 0, self.size, self.size), self._scn, self._con)
        mujoco.mjr_readPixels(self._buf, None, self._rect, self._con)
        return luts

    def render(self, data) -> tuple[np.ndarray, np.ndarray]:
        """-> rgb uint8 [C,H,W,3], masks uint8 [C,H,W] (object ids)."""
        n, s = len(self._cams), self.size
        self._gl.make_current()  # another renderer of this size shares the GL context: bind our own buffer
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._draw(data, segment=False)
        rgb = self._buf[::-1].reshape(s, n, s, 3).transpose(1, 0, 2, 3).copy()
        luts = self._draw(data, segment=True)
        ids = self._buf[::-1].astype(np.int64)
        ids = ids[..., 0] | (ids[..., 1] << 8) | (ids[..., 2] << 16)  # 0 = background
        masks = np.empty((n, s, s), np.uint8)
        for i, lut in enumerate(luts):
            block = ids[:, i * s : (i + 1) * s]
            masks[i] = lut[np.minimum(block, len(lut) - 1)]
        return rgb, masks

    def camera_params(self, data) -> tuple[np.ndarray, np.ndarray]:
        """-> intrinsics float64 [C,3,3] (pixels), extrinsics float64 [C,4,4] world->camera (OpenCV axes)."""
        n = len(self._cams)
        K, E = np.zeros((n, 3, 3)), np.zeros((n, 4, 4))
        for i, cam in enumerate(self._cams):
            cid = cam.fixedcamid
            f = 0.5 * self.size / np.tan(np.radians(self.model.cam_fovy[cid]) / 2)
            K[i] = [[f, 0, self.size / 2], [0, f, self.size / 2], [0, 0, 1]]
            R = _MJ_TO_CV @ data.cam_xmat[cid].reshape(3, 3).T
            E[i, :3, :3], E[i, :3, 3], E[i, 3, 3] = R, -R @ data.cam_xpos[cid], 1.0
        return K, E

    def close(self):
        self._con.free()  # the GL context stays for the next renderer of this size
