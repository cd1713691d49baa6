"""Deterministic samplers for the probability-flow ODE of any `Schedule`.

Legend: x [B, ...] the current sample, x0_hat the denoiser's estimate of the clean data,
t_i the schedule's sampling times (t_0 most noise, t_N = 0), alpha/sigma at t_i, and
alpha'/sigma' at t_{i+1}; lambda = log(alpha/sigma) the half log-SNR.

Every step here is the exact solution of the ODE when x0_hat is held at some value D over
the step (the first-order "exponential integrator"):

    x_next = alpha' * D + sigma' * (x - alpha * D) / sigma        (eps_hat = (x - alpha*D)/sigma)

- "euler":    D = x0_hat(x, t_i). For rectified flow this is exactly Euler on the velocity ODE
              dx/dt = v; for EDM it is Euler on the PF-ODE in sigma, i.e. DDIM.
- "dpmpp_2m": DPM-Solver++(2M) (Lu et al. 2022): data prediction, multistep, second order.
              D = x0_hat_i + (x0_hat_i - x0_hat_{i-1}) / (2r), r = h_{i-1}/h_i, h = step in lambda.
- "unipc":    UniPC-bh2 (Zhao et al. 2023), data prediction, solver order 2 as in diffusers. The
              predictor is dpmpp_2m; once x0_hat is evaluated at the predicted point (the next
              step needs it anyway) the step is redone with a D that also uses it (the UniC
              corrector): third order, no extra model call. The final step is not corrected
              (that would cost an evaluation), nor one that starts at lambda = -inf.

Where an interval is infinite in lambda (alpha = 0 at rectified flow's t = 1, sigma' = 0 at
the last step) the multistep terms are undefined, so that step is first order (the
"lower_order_final" of diffusers); the formula above is still exact there.

Starting part of the way down (SDEdit, Meng et al. 2022; diffusers' "strength"): with `init` a guess of
the clean data and strength s < 1, the first num_steps - round(s * num_steps) steps are skipped and x starts
as the guess noised to the first time kept, alpha*init + sigma*noise. The guess then sets what the noise left
at that level does not decide (for forward dynamics, the last given frame: what the actions do not move).

Classifier-free guidance lives in the caller's denoiser, e.g.

    def denoise(x, t):  # t: 0-dim tensor, the model broadcasts it over the batch
        cond, uncond = (schedule.to_x0(x, t, model(schedule.model_input(x, t), schedule.noise_level(t), c))
                        for c in (ctx, None))
        return cond + g * (cond - uncond)
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from kinema.diffusion.schedules import Schedule

Denoiser = Callable[[Tensor, Tensor], Tensor]  # denoise(x_t, t) -> x0_hat; t a 0-dim tensor
SAMPLERS = ("euler", "dpmpp_2m", "unipc")


def _lam(alpha: float, sigma: float) -> float:
    if alpha == 0:
        return -math.inf
    return math.inf if sigma == 0 else math.log(alpha / sigma)


def _step(x: Tensor, d: Tensor, a: float, s: float, a_next: float, s_next: float) -> Tensor:
    """Exact ODE solution from (a, s) to (a_next, s_next) with x0_hat held at d."""
    return a_next * d + (s_next / s) * (x - a * d)


def _unic_d(d_prev: Tensor | None, d0: Tensor, d_next: Tensor, h: float, h_prev: float | None) -> Tensor:
    """UniC-bh2 corrector's effective D over a step of length h (lambda) from d0 to d_next;
    d_prev, a step h_prev before d0, raises it to order 2 when both intervals are finite."""
    if d_prev is None:
        return d0 + 0.5 * (d_next - d0)  # trapezoid: the h -> 0 limit diffusers uses at order 1
    hh = -h
    phi1 = math.expm1(hh)
    k1 = phi1 / hh - 1
    b1, b2 = k1 / phi1, 2 * (k1 / hh - 0.5) / phi1
    r1 = -h_prev / h  # node of d_prev, in units of h from d0
    # Solve [[1, 1], [r1, 1]] @ (rho0, rho1) = (b1, b2).
    rho0 = (b1 - b2) / (1 - r1)
    rho1 = b1 - rho0
    return d0 + rho0 * (d_prev - d0) / r1 + rho1 * (d_next - d0)


@torch.no_grad()
def sample(denoise: Denoiser, noise: Tensor, schedule: Schedule, *, num_steps: int, sampler: str = "euler",
           shift: float | None = None, progress: bool = False, callback=None, init: Tensor | None = None,
           strength: float = 1.0) -> Tensor:
    """Integrate from t_0 (x = alpha_0*0 + sigma_0*noise) down to t = 0 in num_steps model calls.

    With `init` (shaped like noise) and strength in (0, 1), only the last round(strength * num_steps) steps
    run (at least one), from x = alpha*init + sigma*noise at the first time they visit.
    `shift` overrides the schedule's sampling shift (rectified flow; ignored by EDM).
    `callback(i, t, x0_hat)` is called after each model evaluation. x and t are kept in at least
    float32 (bf16 cannot tell t = 0.998 from 1) and the result is cast back to noise's dtype.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (isinstance(strength, (int, float)) and 0 < strength <= 1):
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    if strength < 1 and (init is None or init.shape != noise.shape):
        raise ValueError(f"strength < 1 starts from a guess: expected init shaped like noise {tuple(noise.shape)}, "
                         f"got {None if init is None else tuple(init.shape)}")
    times = schedule.sampling_times(num_steps, shift=shift)
    if strength < 1:
        times = times[num_steps - max(1, round(strength * num_steps)):]
        num_steps = len(times) - 1
    alphas, sigmas = (v.tolist() for v in schedule.alpha_sigma(times))
    lams = [_lam(a, s) for a, s in zip(alphas, sigmas)]
    hs = [lams[i + 1] - lams[i] for i in range(num_steps)]
    ok = [math.isfinite(h) for h in hs]  # finite lambda-interval: multistep terms are defined there

    def coef(i):
        return alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]

    dtype = torch.promote_types(noise.dtype, torch.float32)
    x = sigmas[0] * noise.to(dtype)  # alpha_0 * E[x0] is dropped: the data mean is unknown, taken as 0
    if strength < 1:
        x = x + alphas[0] * init.to(dtype)
    x_before = d1 = d2 = None  # x at t_{i-1}; x0_hat at t_{i-1} and t_{i-2}
    for i in tqdm(range(num_steps), disable=not progress, desc=f"{sampler} sampling"):
        t = times[i].to(dtype=dtype, device=noise.device)
        d = denoise(x, t)
        if callback is not None:
            callback(i, t, d)
        if sampler == "unipc" and i > 0 and ok[i - 1]:
            # Redo the last step with the corrector's D; its order matches that step's predictor.
            second = i >= 2 and ok[i - 2]
            d_c = _unic_d(d2 if second else None, d1, d, hs[i - 1], hs[i - 2] if second else None)
            x = _step(x_before, d_c, *coef(i - 1))
        if sampler != "euler" and i > 0 and ok[i - 1] and ok[i]:
            d_eff = d + (d - d1) * (hs[i] / (2 * hs[i - 1]))  # 2M: r = h_{i-1}/h_i
        else:
            d_eff = d
        x_before, d2, d1 = x, d1, d
        x = _step(x, d_eff, *coef(i))
    return x.to(noise.dtype)
