# Import kinema first: it selects the EGL rendering backend before any test imports mujoco.
import kinema  # noqa: F401

# One thread per test process: pytest-xdist runs a process per core, and oversubscribed
# OpenMP threads spin-wait each other into slowdowns of 10x and more.
import torch  # noqa: E402

torch.set_num_threads(1)
