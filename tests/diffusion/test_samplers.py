import math

import pytest
import torch

from kinema.diffusion import EDM, SAMPLERS, RectifiedFlow, sample

# Data x0 ~ N(MU, S^2) per dimension: E[x0 | x_t] is exact, and the probability-flow ODE keeps
# z = (x_t - alpha*MU) / sqrt(alpha^2 S^2 + sigma^2) fixed, so x0 = MU + S*z in closed form.
MU, S = 0.7, 0.3
SCHEDULES = {"rf": RectifiedFlow(), "rf_shift3": RectifiedFlow(shift=3.0), "edm": EDM()}


def gaussian_denoiser(schedule):
    def denoise(x, t):
        assert t.dim() == 0
        alpha, sigma = schedule.alpha_sigma(t)
        return MU + alpha * S**2 / (alpha**2 * S**2 + sigma**2) * (x - alpha * MU)
    return denoise


def exact_flow(schedule, noise, t_end=0.0):
    """Closed-form ODE solution from the sampler's start x = sigma_0 * noise to time t_end."""
    times = schedule.sampling_times(1)
    (a0, s0), (a1, s1) = (map(float, schedule.alpha_sigma(t)) for t in (times[0], torch.tensor(t_end)))
    z = (s0 * noise - a0 * MU) / math.hypot(a0 * S, s0)
    return a1 * MU + math.hypot(a1 * S, s1) * z


def noise_like(n=4096, seed=0, dtype=torch.float64):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def rms(a, b):
    return (a - b).pow(2).mean().sqrt().item()


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samples_have_the_data_distribution(name, sampler):
    schedule = SCHEDULES[name]
    steps = 400 if sampler == "euler" else 64
    x = sample(gaussian_denoiser(schedule), noise_like(), schedule, num_steps=steps, sampler=sampler)
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    assert x.std().item() == pytest.approx(S, abs=0.01)


@pytest.mark.parametrize("name", SCHEDULES)
def test_many_step_euler_reference_matches_closed_form(name):
    schedule, noise = SCHEDULES[name], noise_like()
    ref = sample(gaussian_denoiser(schedule), noise, schedule, num_steps=1000)
    assert rms(ref, exact_flow(schedule, noise)) < 3e-3


@pytest.mark.parametrize("name", ["rf", "edm"])
def test_higher_order_samplers_beat_euler_at_few_steps(name):
    # Same noise, deterministic ODE: every sampler aims at the same endpoint as a 1000-step run.
    schedule, noise = SCHEDULES[name], noise_like()
    denoise = gaussian_denoiser(schedule)
    ref = sample(denoise, noise, schedule, num_steps=1000)
    err = {k: rms(sample(denoise, noise, schedule, num_steps=8, sampler=k), ref) for k in SAMPLERS}
    assert err["dpmpp_2m"] < 0.6 * err["euler"], err
    assert err["unipc"] < 0.6 * err["euler"], err


class _LogSNRUniform(EDM):
    """sigma from 1 to e^-3 in lambda-uniform steps: no infinite intervals and no first-order
    final jump to 0, so the order of the multistep formulas themselves shows. Starting in the
    data's transition (sigma ~ S) also exposes a wrong first (order-1) corrector step."""

    def sampling_times(self, num_steps, *, shift=None):
        return torch.exp(-torch.linspace(0, 3, num_steps + 1, dtype=torch.float64))


@pytest.mark.parametrize("sampler, order", [("euler", 1), ("dpmpp_2m", 2), ("unipc", 3)])
def test_convergence_order(sampler, order):
    schedule, noise = _LogSNRUniform(), noise_like()
    exact = exact_flow(schedule, noise, t_end=math.exp(-3))
    errs = [rms(sample(gaussian_denoiser(schedule), noise, schedule, num_steps=n, sampler=sampler), exact)
            for n in (32, 64)]
    assert math.log2(errs[0] / errs[1]) == pytest.approx(order, abs=0.35), errs


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_deterministic_and_float32(sampler):
    schedule = EDM()
    denoise = gaussian_denoiser(schedule)
    noise = noise_like(256, dtype=torch.float32)
    a = sample(denoise, noise, schedule, num_steps=6, sampler=sampler)
    b = sample(denoise, noise.clone(), schedule, num_steps=6, sampler=sampler)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    c = sample(denoise, noise.double(), schedule, num_steps=6, sampler=sampler)
    assert torch.allclose(a.double(), c, atol=1e-4)


def test_low_precision_noise_is_integrated_in_float32():
    schedule, seen = RectifiedFlow(), []

    def denoise(x, t):
        seen.append((x.dtype, t.dtype))
        return gaussian_denoiser(schedule)(x, t)

    x = sample(denoise, noise_like(64, dtype=torch.bfloat16), schedule, num_steps=3)
    assert x.dtype == torch.bfloat16 and set(seen) == {(torch.float32, torch.float32)}


def test_callback_and_progress():
    schedule, calls = RectifiedFlow(shift=2.0), []
    sample(gaussian_denoiser(schedule), noise_like(16), schedule, num_steps=5, sampler="dpmpp_2m",
           progress=True, callback=lambda i, t, x0: calls.append((i, t.item(), x0.shape)))
    times = schedule.sampling_times(5)
    assert [c[0] for c in calls] == list(range(5))
    assert [c[1] for c in calls] == pytest.approx(times[:-1].tolist())
    assert all(c[2] == (16,) for c in calls)


def test_shift_argument_overrides_schedule_shift():
    denoise = gaussian_denoiser(RectifiedFlow())
    a = sample(denoise, noise_like(16), RectifiedFlow(), num_steps=4, shift=3.0)
    b = sample(denoise, noise_like(16), RectifiedFlow(shift=3.0), num_steps=4)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_strength_starts_from_the_guess_noised_part_way(name, sampler):
    # With strength s only the last round(s * N) steps run, from x = alpha*init + sigma*noise at the first
    # time kept; from there the probability-flow ODE of the Gaussian data is solved in closed form.
    schedule, n, strength = SCHEDULES[name], 200, 0.3
    noise, init = noise_like(seed=0), noise_like(seed=1) * 0.2 + 1.5
    calls = []
    x = sample(gaussian_denoiser(schedule), noise, schedule, num_steps=n, sampler=sampler, init=init,
               strength=strength, callback=lambda i, t, x0: calls.append(t.item()))
    times = schedule.sampling_times(n)[n - round(strength * n):]
    assert calls == pytest.approx(times[:-1].tolist())
    a0, s0 = (float(v) for v in schedule.alpha_sigma(times[0]))
    exact = MU + S * (a0 * init + s0 * noise - a0 * MU) / math.hypot(a0 * S, s0)
    assert rms(x, exact) < (1e-2 if sampler == "euler" else 3e-3)
    assert rms(x, exact) < 0.05 * rms(x, exact_flow(schedule, noise))  # the guess, not pure noise, decided it


def test_full_strength_ignores_the_guess():
    schedule = RectifiedFlow(shift=2.0)
    a = sample(gaussian_denoiser(schedule), noise_like(16), schedule, num_steps=4)
    b = sample(gaussian_denoiser(schedule), noise_like(16), schedule, num_steps=4, init=noise_like(16, seed=5))
    assert torch.equal(a, b)


def test_one_step_returns_the_first_denoised_estimate():
    schedule = RectifiedFlow()
    x = sample(gaussian_denoiser(schedule), noise_like(16), schedule, num_steps=1, sampler="unipc")
    assert torch.allclose(x, torch.full_like(x, MU))  # at t = 1 the posterior mean is the data mean


def test_bad_arguments():
    schedule = RectifiedFlow()
    denoise = gaussian_denoiser(schedule)
    with pytest.raises(ValueError, match="sampler must be one of.*'heun'"):
        sample(denoise, noise_like(4), schedule, num_steps=4, sampler="heun")
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="num_steps"):
            sample(denoise, noise_like(4), schedule, num_steps=bad)
    for bad in (0, -0.5, 1.5, "0.5"):
        with pytest.raises(ValueError, match="strength must be a number in \\(0, 1\\]"):
            sample(denoise, noise_like(4), schedule, num_steps=4, init=noise_like(4), strength=bad)
    with pytest.raises(ValueError, match="strength < 1 starts from a guess: expected init shaped like noise \\(4,\\)"):
        sample(denoise, noise_like(4), schedule, num_steps=4, strength=0.5)
    with pytest.raises(ValueError, match="got \\(3,\\)"):
        sample(denoise, noise_like(4), schedule, num_steps=4, init=noise_like(3), strength=0.5)
