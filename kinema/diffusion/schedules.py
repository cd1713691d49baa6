"""Noise schedules: how data is noised for training and which times a sampler visits.

Legend: x0 clean data, eps ~ N(0, I) noise, x_t noised sample, all of one shape [B, ...];
t the schedule's native time, a tensor broadcastable against x (e.g. t[:, None, None] for
one time per sample, or the full shape of x for per-token times); out the network output.

Every schedule writes the forward process in one form,

    x_t = alpha(t) * x0 + sigma(t) * eps,

so samplers need only `alpha_sigma` and a denoiser x0_hat = to_x0(x_t, t, out).

RectifiedFlow (SD3, Esser et al. 2024): t in [0, 1], alpha = 1 - t, sigma = t. The network
predicts the velocity v = dx_t/dt = eps - x0, so x0_hat = x_t - t * v. Training times are
logit-normal, u = sigmoid(N(m, s)), then shifted, t = shift*u / (1 + (shift-1)*u). The shift
multiplies the noise-to-signal odds t/(1-t) = sigma/alpha by `shift`, so shifts compose by
multiplication and shift > 1 spends more of training and sampling at high noise.

EDM (Karras et al. 2022, as in cosmos-predict1): t is sigma itself, alpha = 1. The network
output is preconditioned, x0_hat = c_skip*x_t + c_out*out, with the input scaled by c_in
and the time fed as c_noise = ln(sigma)/4, all chosen so the input and the regression
target have unit variance when the data has std sigma_data.

Training step (x0 [B, N, C] tokens; one time per sample here, [B, N, 1] times work as well):

    t = schedule.sample_training_t(B, device=x0.device)[:, None, None]       # [B, 1, 1]
    x_t = schedule.add_noise(x0, eps, t)
    out = model(schedule.model_input(x_t, t), schedule.noise_level(t).flatten())
    loss = schedule.loss(out, x0, eps, t).mean()
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


class Schedule:
    """Interface shared by every schedule; see the module docstring for the notation."""

    name: ClassVar[str]

    def sample_training_t(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """[n] float32 training times drawn from the schedule's training distribution."""
        raise NotImplementedError

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha(t), sigma(t)), each shaped like t."""
        raise NotImplementedError

    def noise_level(self, t: Tensor) -> Tensor:
        """The scalar fed to the model's timestep embedding (c_noise)."""
        raise NotImplementedError

    def model_input(self, x_t: Tensor, t: Tensor) -> Tensor:
        """What the network sees in place of x_t."""
        raise NotImplementedError

    def to_x0(self, x_t: Tensor, t: Tensor, out: Tensor) -> Tensor:
        """Network output -> denoised estimate x0_hat."""
        raise NotImplementedError

    def loss(self, out: Tensor, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Per-element weighted squared error, shaped like x0; the caller reduces it."""
        raise NotImplementedError

    def sampling_times(self, num_steps: int, *, shift: float | None = None) -> Tensor:
        """[num_steps + 1] float64 times from most noise down to exactly 0 (float64 keeps sampler
        coefficients exact; cast to the model's dtype when feeding them in)."""
        raise NotImplementedError

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        alpha, sigma = self.alpha_sigma(t)
        return alpha * x0 + sigma * noise

    def to_dict(self) -> dict:
        """{"name": ..., **params}, JSON-able; get_schedule(d) rebuilds the schedule."""
        return {"name": self.name, **{f.name: float(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def _check_steps(num_steps) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")


def _check_positive(**kw) -> None:
    for k, v in kw.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{k} must be a finite number > 0, got {v!r}")


def _randn(n: int, generator: torch.Generator | None, device) -> Tensor:
    # Draw on the generator's own device (a CPU generator cannot fill a CUDA tensor), then move.
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    gen_device = generator.device if generator is not None else device
    return torch.randn(n, generator=generator, device=gen_device, dtype=torch.float32).to(device)


def _shift_time(u: Tensor, shift: float) -> Tensor:
    return shift * u / (1 + (shift - 1) * u)


@dataclass(frozen=True)
class RectifiedFlow(Schedule):
    """x_t = (1-t) x0 + t eps; the network predicts v = eps - x0."""

    name: ClassVar[str] = "rectified_flow"
    shift: float = 1.0
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self):
        _check_positive(shift=self.shift, logit_std=self.logit_std)
        if not math.isfinite(self.logit_mean):
            raise ValueError(f"logit_mean must be finite, got {self.logit_mean!r}")

    def sample_training_t(self, n, *, generator=None, device=None):
        u = torch.sigmoid(self.logit_mean + self.logit_std * _randn(n, generator, device))
        return _shift_time(u, self.shift)

    def alpha_sigma(self, t):
        return 1 - t, t

    def noise_level(self, t):
        # t itself, in [0, 1]; the model's timestep embedding does any scaling (e.g. x1000).
        return t

    def model_input(self, x_t, t):
        return x_t

    def to_x0(self, x_t, t, out):
        return x_t - t * out

    def loss(self, out, x0, noise, t):
        return (out - (noise - x0)) ** 2

    def sampling_times(self, num_steps, *, shift=None):
        _check_steps(num_steps)
        shift = self.shift if shift is None else shift
        _check_positive(shift=shift)
        t = _shift_time(torch.linspace(1, 0, num_steps + 1, dtype=torch.float64), shift)
        t[0], t[-1] = 1.0, 0.0  # exact ends whatever the rounding inside the shift
        return t


@dataclass(frozen=True)
class EDM(Schedule):
    """x_t = x0 + sigma eps with t = sigma; Karras preconditioning around the network."""

    name: ClassVar[str] = "edm"
    sigma_data: float = 0.5
    p_mean: float = 0.0
    p_std: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    train_sigma_min: float = 0.0002
    train_sigma_max: float = 80.0

    def __post_init__(self):
        _check_positive(sigma_data=self.sigma_data, p_std=self.p_std, sigma_min=self.sigma_min,
                        sigma_max=self.sigma_max, rho=self.rho, train_sigma_min=self.train_sigma_min,
                        train_sigma_max=self.train_sigma_max)
        if not math.isfinite(self.p_mean):
            raise ValueError(f"p_mean must be finite, got {self.p_mean!r}")
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got {self.sigma_min} >= {self.sigma_max}")
        if self.train_sigma_min > self.train_sigma_max:
            raise ValueError(f"train_sigma_min must be <= train_sigma_max, got "
                             f"{self.train_sigma_min} > {self.train_sigma_max}")

    def preconditioning(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for noise level sigma (EDM paper, Table 1)."""
        sd2 = self.sigma_data**2
        norm = (sigma**2 + sd2).sqrt()
        return sd2 / norm**2, sigma * self.sigma_data / norm, 1 / norm, 0.25 * sigma.log()

    def sample_training_t(self, n, *, generator=None, device=None):
        sigma = (self.p_mean + self.p_std * _randn(n, generator, device)).exp()
        return sigma.clamp(self.train_sigma_min, self.train_sigma_max)

    def alpha_sigma(self, t):
        return torch.ones_like(t), t

    def noise_level(self, t):
        return 0.25 * t.log()

    def model_input(self, x_t, t):
        return x_t / (t**2 + self.sigma_data**2).sqrt()

    def to_x0(self, x_t, t, out):
        c_skip, c_out, _, _ = self.preconditioning(t)
        return c_skip * x_t + c_out * out

    def loss(self, out, x0, noise, t):
        # Equal to weight*(to_x0 - x0)^2 with weight (s^2+sd^2)/(s*sd)^2 = 1/c_out^2, but written
        # as (out - target)^2: the gradient reaches `out` unscaled instead of through c_out and back
        # through 1/c_out^2 (which is ~1/s^2 = 2.5e7 at s = 2e-4), and the target is expanded from
        # (x0, eps) in closed form, target = (x0 - c_skip*x_t)/c_out = (s*x0 - sd^2*eps)/(sd*sqrt(s^2+sd^2)),
        # so no near-equal terms are subtracted at small sigma.
        sd = self.sigma_data
        target = (t * x0 - sd**2 * noise) / (sd * (t**2 + sd**2).sqrt())
        return (out - target) ** 2

    def sampling_times(self, num_steps, *, shift=None):
        """Karras rho-schedule, sigma_max -> sigma_min in num_steps points, then 0. `shift` is
        accepted for a uniform call signature and ignored: EDM moves noise via sigma_max/rho."""
        _check_steps(num_steps)
        ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        sigmas = (hi + ramp * (lo - hi)) ** self.rho
        sigmas[0] = self.sigma_max
        if num_steps > 1:
            sigmas[-1] = self.sigma_min
        return torch.cat([sigmas, sigmas.new_zeros(1)])


SCHEDULES: dict[str, type[Schedule]] = {cls.name: cls for cls in (RectifiedFlow, EDM)}


def resolution_shift(base_shift: float, tokens_per_frame: int, ref_tokens_per_frame: int = 16) -> float:
    """base_shift * sqrt(tokens_per_frame / ref_tokens_per_frame): SD3's resolution-dependent shift.

    More tokens per frame means more redundant pixels, so a given noise level destroys less of
    the signal; the noise must go higher (larger shift) to reach the same effective difficulty.
    """
    _check_positive(base_shift=base_shift, tokens_per_frame=tokens_per_frame,
                    ref_tokens_per_frame=ref_tokens_per_frame)
    return float(base_shift) * math.sqrt(tokens_per_frame / ref_tokens_per_frame)


def get_schedule(name_or_dict: str | dict | Schedule, **kw) -> Schedule:
    """Build a schedule from its name ("rectified_flow" | "edm") or a to_dict() result; `kw`
    override the stored parameters. A Schedule instance is returned as is when no kw are given."""
    if isinstance(name_or_dict, Schedule):
        return dataclasses.replace(name_or_dict, **kw) if kw else name_or_dict
    if isinstance(name_or_dict, dict):
        params = dict(name_or_dict)
        name = params.pop("name", None)
        params.update(kw)
    else:
        name, params = name_or_dict, kw
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule name {name!r}; expected one of {sorted(SCHEDULES)}")
    cls = SCHEDULES[name]
    known = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(params) - known):
        raise ValueError(f"unknown parameters {unknown} for schedule {name!r}; expected some of {sorted(known)}")
    return cls(**params)
