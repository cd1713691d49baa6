import json
import math

import pytest
import torch

from kinema.diffusion import EDM, RectifiedFlow, get_schedule, resolution_shift


def _data(shape=(4, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


# ---- rectified flow ----

@pytest.mark.parametrize("per_token", [False, True])
def test_rf_add_noise_matches_alpha_sigma_and_velocity_recovers_x0(per_token):
    rf = RectifiedFlow()
    x0, eps = _data()
    t = torch.rand(x0.shape if per_token else (4, 1, 1), dtype=torch.float64)
    alpha, sigma = rf.alpha_sigma(t)
    assert torch.allclose(alpha, 1 - t) and torch.equal(sigma, t)
    x_t = rf.add_noise(x0, eps, t)
    assert torch.allclose(x_t, (1 - t) * x0 + t * eps)
    v = eps - x0
    assert torch.allclose(rf.to_x0(x_t, t, v), x0)
    assert torch.equal(rf.loss(v, x0, eps, t), torch.zeros_like(x0))
    assert torch.allclose(rf.loss(v + 0.5, x0, eps, t), torch.full_like(x0, 0.25))
    assert torch.equal(rf.model_input(x_t, t), x_t) and torch.equal(rf.noise_level(t), t)


def test_rf_training_t_is_logit_normal_and_shift_moves_median_up():
    g = torch.Generator().manual_seed(0)
    t1 = RectifiedFlow().sample_training_t(20_000, generator=g)
    t3 = RectifiedFlow(shift=3.0).sample_training_t(20_000, generator=g)
    assert t1.dtype == torch.float32 and t1.shape == (20_000,)
    for t in (t1, t3):
        assert (t > 0).all() and (t < 1).all()
    # median of sigmoid(N(0, 1)) is 1/2; the shift maps it to 3*0.5/(1 + 2*0.5) = 0.75
    assert t1.median().item() == pytest.approx(0.5, abs=0.02)
    assert t3.median().item() == pytest.approx(0.75, abs=0.02)
    again = RectifiedFlow().sample_training_t(20_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, t1)


def test_rf_sampling_times():
    rf = RectifiedFlow()
    t = rf.sampling_times(8)
    assert t.shape == (9,) and t[0] == 1 and t[-1] == 0
    assert (t[1:] < t[:-1]).all()
    assert torch.allclose(t, torch.linspace(1, 0, 9, dtype=t.dtype))
    t3 = rf.sampling_times(8, shift=3.0)
    assert t3[0] == 1 and t3[-1] == 0 and (t3[1:] < t3[:-1]).all()
    assert (t3[1:-1] > t[1:-1]).all()
    assert torch.equal(RectifiedFlow(shift=3.0).sampling_times(8), t3)
    assert torch.allclose(t3[4], torch.tensor(0.75, dtype=t3.dtype))  # u = 0.5 -> 0.75
    for shift in (0.3, 7.0):
        ts = rf.sampling_times(5, shift=shift)
        assert ts[0] == 1 and ts[-1] == 0
    assert torch.equal(rf.sampling_times(1), torch.tensor([1.0, 0.0], dtype=t.dtype))


# ---- EDM ----

def test_edm_preconditioning_numbers():
    edm = EDM()  # sigma_data = 0.5
    s = torch.tensor(0.5, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm.preconditioning(s)
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(0.5 / math.sqrt(2))
    assert c_in.item() == pytest.approx(math.sqrt(2))
    assert c_noise.item() == pytest.approx(0.25 * math.log(0.5))
    assert edm.noise_level(s).item() == pytest.approx(0.25 * math.log(0.5))
    x = torch.ones(3, dtype=torch.float64)
    assert torch.allclose(edm.model_input(x, s), x * math.sqrt(2))
    alpha, sigma = edm.alpha_sigma(s)
    assert alpha.item() == 1 and sigma.item() == 0.5


@pytest.mark.parametrize("per_token", [False, True])
def test_edm_ideal_output_gives_x0_and_zero_loss(per_token):
    edm = EDM()
    x0, eps = _data()
    sig = torch.tensor([0.0002, 0.5, 3.0, 80.0], dtype=torch.float64)[:, None, None]
    if per_token:
        sig = torch.exp(torch.randn(x0.shape, dtype=torch.float64) * 2)
    x_t = edm.add_noise(x0, eps, sig)
    assert torch.allclose(x_t, x0 + sig * eps)
    c_skip, c_out, _, _ = edm.preconditioning(sig)
    ideal = (x0 - c_skip * x_t) / c_out
    assert torch.allclose(edm.to_x0(x_t, sig, ideal), x0, atol=1e-9)
    assert edm.loss(ideal, x0, eps, sig).max().item() < 1e-12


def test_edm_loss_is_weighted_x0_error():
    edm = EDM()
    x0, eps = _data()
    out = torch.randn_like(x0)
    sig = torch.tensor([0.002, 0.5, 3.0, 80.0], dtype=torch.float64)[:, None, None]
    x_t = edm.add_noise(x0, eps, sig)
    weight = (sig**2 + 0.25) / (sig * 0.5) ** 2
    expected = weight * (edm.to_x0(x_t, sig, out) - x0) ** 2
    assert torch.allclose(edm.loss(out, x0, eps, sig), expected, rtol=1e-9)


def test_edm_training_sigma_is_clipped_lognormal():
    edm = EDM(p_mean=-1.0, p_std=2.0, train_sigma_min=0.01, train_sigma_max=5.0)
    s = edm.sample_training_t(20_000, generator=torch.Generator().manual_seed(0))
    assert s.dtype == torch.float32 and s.min() == pytest.approx(0.01) and s.max() == pytest.approx(5.0)
    assert s.log().median().item() == pytest.approx(-1.0, abs=0.05)


def test_edm_karras_times():
    edm = EDM()
    t = edm.sampling_times(10)
    assert t.shape == (11,) and t[0] == 80.0 and t[-2] == 0.002 and t[-1] == 0
    assert (t[1:] < t[:-1]).all()
    mid = ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7  # hand-computed rho-schedule midpoint
    assert edm.sampling_times(3)[1].item() == pytest.approx(mid)
    assert torch.equal(edm.sampling_times(10, shift=5.0), t)  # shift is ignored by EDM
    assert torch.equal(edm.sampling_times(1), torch.tensor([80.0, 0.0], dtype=t.dtype))


# ---- helpers, validation ----

def test_resolution_shift():
    assert resolution_shift(3.0, 16) == 3.0
    assert resolution_shift(3.0, 64) == pytest.approx(6.0)
    assert resolution_shift(2.0, 100, ref_tokens_per_frame=25) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="tokens_per_frame"):
        resolution_shift(3.0, 0)


@pytest.mark.parametrize("schedule", [RectifiedFlow(shift=3.0, logit_mean=-0.5), EDM(sigma_data=1.0, rho=5.0)])
def test_get_schedule_round_trips_to_dict(schedule):
    d = json.loads(json.dumps(schedule.to_dict()))
    assert d["name"] == schedule.name
    assert get_schedule(d) == schedule
    assert get_schedule(schedule.name) == type(schedule)()


def test_get_schedule_keyword_overrides():
    assert get_schedule({"name": "edm", "sigma_data": 1.0}, sigma_data=2.0) == EDM(sigma_data=2.0)
    assert get_schedule("rectified_flow", shift=3.0) == RectifiedFlow(shift=3.0)
    rf = RectifiedFlow()
    assert get_schedule(rf) is rf and get_schedule(rf, shift=2.0) == RectifiedFlow(shift=2.0)


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="unknown schedule name 'ddpm'.*edm.*rectified_flow"):
        get_schedule("ddpm")
    with pytest.raises(ValueError, match=r"unknown parameters \['sigma_data'\]"):
        get_schedule({"name": "rectified_flow", "sigma_data": 0.5})
    with pytest.raises(ValueError, match="shift"):
        RectifiedFlow(shift=0)
    with pytest.raises(ValueError, match="shift"):
        RectifiedFlow().sampling_times(4, shift=-1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        EDM(sigma_min=100.0)
    with pytest.raises(ValueError, match="train_sigma_min"):
        EDM(train_sigma_min=10.0, train_sigma_max=1.0)
    for schedule in (RectifiedFlow(), EDM()):
        with pytest.raises(ValueError, match="num_steps"):
            schedule.sampling_times(0)
        with pytest.raises(ValueError, match="num_steps"):
            schedule.sampling_times(2.5)
