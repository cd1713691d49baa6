"""Noise schedules and samplers for diffusion / flow models; the models themselves live elsewhere."""

from kinema.diffusion.samplers import SAMPLERS, Denoiser, sample
from kinema.diffusion.schedules import EDM, SCHEDULES, RectifiedFlow, Schedule, get_schedule, resolution_shift

__all__ = ["EDM", "SAMPLERS", "SCHEDULES", "Denoiser", "RectifiedFlow", "Schedule", "get_schedule",
           "resolution_shift", "sample"]
