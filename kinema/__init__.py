"""kinema: an open world-foundation-model toolkit for physical AI."""

import os

# MuJoCo picks its OpenGL backend when first imported; EGL renders offscreen on a
# CPU (Mesa llvmpipe) and on GPUs alike. Users may still override it.
os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
