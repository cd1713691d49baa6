"""Next-token choice (kinema.model.decoding) and the LM objective (kinema.model.lm_loss) on hand-made cases."""

import math

import pytest
import torch

from kinema.model.decoding import SamplingParams, filter_logits, sample_next
from kinema.model.lm_loss import Z_WEIGHT, keep_loss, lm_loss

PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]])  # a hand-made distribution, already sorted
LOGITS = PROBS.log()


def test_ce_and_z_loss_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]: CE of class 1 = ln(4/3); logsumexp = ln(1 + 3) = ln 4
    logits = torch.tensor([[0.0, math.log(3.0)]])
    total, m = lm_loss(logits, torch.tensor([1]))
    assert m["ce"] == pytest.approx(math.log(4 / 3), abs=1e-6)
    assert m["z"] == pytest.approx(math.log(4) ** 2, abs=1e-6)
    assert float(total) == pytest.approx(math.log(4 / 3) + Z_WEIGHT * math.log(4) ** 2, abs=1e-6)
    total, m = lm_loss(logits, torch.tensor([0]), z_weight=0.5)
    assert float(total) == pytest.approx(math.log(4) + 0.5 * math.log(4) ** 2, abs=1e-6)


def test_lm_loss_is_a_mean_over_rows_and_checks_them():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    _, m = lm_loss(logits, torch.tensor([1, 0]))
    assert m["ce"] == pytest.approx((math.log(4 / 3) + math.log(2)) / 2, abs=1e-6)
    assert m["z"] == pytest.approx((math.log(4) ** 2 + math.log(2) ** 2) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="2 rows but target has 3"):
        lm_loss(logits, torch.tensor([0, 1, 1]))


def test_keep_loss_by_hand_holds_only_what_the_teacher_got_right():
    # teacher [1/4, 3/4] and student [1/2, 1/2]: KL = 1/4 ln(1/2) + 3/4 ln(3/2); the second row's teacher is wrong
    # (argmax 1, target 0) so it adds nothing, yet counts in the mean over rows
    teacher = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    student = torch.zeros(2, 2)
    loss, m = keep_loss(student, teacher, torch.tensor([1, 0]))
    kl = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert float(loss) == pytest.approx(kl / 2, abs=1e-6) and m["kept"] == 0.5
    assert float(keep_loss(teacher, teacher, torch.tensor([1, 1]))[0]) == pytest.approx(0.0, abs=1e-7)
    # hold: only the marked rows may be kept (the tasks a fine-tune keeps); both right, the first one held
    both, hm = keep_loss(student, teacher, torch.tensor([1, 1]), torch.tensor([True, False]))
    assert float(both) == pytest.approx(kl / 2, abs=1e-6) and hm["kept"] == 0.5
    assert float(keep_loss(student, teacher, torch.tensor([1, 1]), torch.tensor([False, False]))[0]) == 0.0
    with pytest.raises(ValueError, match="must agree"):
        keep_loss(student, teacher[:1], torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="must agree"):
        keep_loss(student, teacher, torch.tensor([1, 0]), torch.tensor([True]))


def kept(logits):
    return torch.isfinite(logits[0]).nonzero().squeeze(1).tolist()


def test_top_k_keeps_the_k_largest():
    assert kept(filter_logits(LOGITS, top_k=2)) == [0, 1]
    assert kept(filter_logits(LOGITS, top_k=1)) == [0]
    assert kept(filter_logits(LOGITS, top_k=10)) == [0, 1, 2, 3]  # k beyond the vocabulary: off


@pytest.mark.parametrize("p, want", [(0.4, [0]), (0.75, [0, 1]), (0.85, [0, 1, 2]), (0.97, [0, 1, 2, 3]),
                                     (1.0, [0, 1, 2, 3])])
def test_top_p_keeps_the_smallest_set_reaching_p(p, want):
    assert kept(filter_logits(LOGITS, top_p=p)) == want
    # the order of the vocabulary does not matter
    perm = torch.tensor([2, 0, 3, 1])
    assert sorted(perm[kept(filter_logits(LOGITS[:, perm], top_p=p))].tolist()) == want


def test_top_k_then_top_p_and_kept_logits_unchanged():
    out = filter_logits(LOGITS, top_k=3, top_p=0.85)
    assert kept(out) == [0, 1, 2]
    assert torch.allclose(out[0, :3], LOGITS[0, :3])


def test_greedy_is_argmax_and_sampling_follows_the_filtered_distribution():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert sample_next(logits, SamplingParams()).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    draws = sample_next(LOGITS.expand(20000, 4), SamplingParams(temperature=1.0, top_p=0.75), g)
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[2] == 0 and freq[3] == 0
    assert freq[0] == pytest.approx(0.5 / 0.8, abs=0.02) and freq[1] == pytest.approx(0.3 / 0.8, abs=0.02)


def test_temperature_sharpens_and_flattens():
    g = torch.Generator().manual_seed(1)
    cold = sample_next(LOGITS.expand(5000, 4), SamplingParams(temperature=0.25), g)
    hot = sample_next(LOGITS.expand(5000, 4), SamplingParams(temperature=4.0), g)
    assert (cold == 0).float().mean() > 0.85 and (hot == 3).float().mean() > 0.15


def test_sampling_with_a_seed_reproduces():
    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(3))
    params = SamplingParams(temperature=1.0, top_p=0.8)
    a = sample_next(logits, params, torch.Generator().manual_seed(7))
    b = sample_next(logits, params, torch.Generator().manual_seed(7))
    c = sample_next(logits, params, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("kw, match", [(dict(temperature=-1), "temperature"), (dict(top_k=-2), "top_k"),
                                       (dict(top_p=0.0), "top_p"), (dict(top_p=1.5), "top_p"),
                                       (dict(max_new_tokens=0), "max_new_tokens"),
                                       (dict(stop=[""]), "stop"), (dict(stop=["a", 3]), "stop"),
                                       (dict(stop=""), "stop"), (dict(stop=[None]), "stop"),
                                       (dict(stop={"a": 1}), "stop")])
def test_bad_sampling_params_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kw)


def test_stop_strings_are_kept_as_a_tuple_and_a_single_one_is_a_list_of_one():
    assert SamplingParams().stop == ()
    assert SamplingParams(stop="\n").stop == ("\n",) and SamplingParams(stop=["a", "b"]).stop == ("a", "b")


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.999])
def test_top_p_prefilter_keeps_the_same_set_as_a_full_sort(top_p):
    from kinema.model.decoding import filter_logits

    logits = torch.randn(3, 5000, generator=torch.Generator().manual_seed(0)) * 2
    probs = logits.softmax(-1)
    sp, order = probs.sort(-1, descending=True)
    keep_sorted = (sp.cumsum(-1) - sp) < top_p
    want = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, keep_sorted)
    assert torch.equal(torch.isfinite(filter_logits(logits, top_p=top_p)), want)
