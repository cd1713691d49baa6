# Import kinema first: it selects the EGL rendering backend before any test imports mujoco.
import kinema  # noqa: F401
