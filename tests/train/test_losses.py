"""The DPO loss family against values worked out by hand."""

import math

import pytest
import torch

from studio.train.losses import LOSSES, LossSettings, PairLogps, preference_loss


def pair(ref=True):
    # policy log-probs -1 (chosen), -3 (rejected); reference -2 for both -> log-ratio margin = 1 - (-1) = 2
    # completions of 2 (chosen) and 4 (rejected) tokens
    t = torch.tensor
    return PairLogps(t([-1.0]), t([-3.0]), t([-2.0]) if ref else None, t([-2.0]) if ref else None,
                     t([2.0]), t([4.0]))


def log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_sigmoid_is_minus_log_sigmoid_of_beta_margin():
    # beta 0.5 * margin 2 = 1 -> -log sigma(1) = log(1 + e^-1)
    out = preference_loss("sigmoid", pair(), LossSettings(beta=0.5))
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    assert out.loss.item() == pytest.approx(0.3132617, abs=1e-6)
    # rewards are beta * (log pi - log ref)
    assert out.chosen_rewards.item() == pytest.approx(0.5)
    assert out.rejected_rewards.item() == pytest.approx(-0.5)


def test_ipo_squares_the_per_token_margin_minus_half_over_beta():
    # per-token log-ratios: chosen 1/2, rejected -1/4 -> h = 0.75; 1/(2*0.5) = 1 -> (0.75 - 1)^2
    out = preference_loss("ipo", pair(), LossSettings(beta=0.5))
    assert out.loss.item() == pytest.approx(0.0625, abs=1e-6)


def test_robust_with_label_smoothing():
    # (-(1 - 0.1) log s(1) + 0.1 log s(-1)) / (1 - 0.2)
    expected = (-(0.9) * log_sigmoid(1) + 0.1 * log_sigmoid(-1)) / 0.8
    assert expected == pytest.approx(0.1882617, abs=1e-6)
    out = preference_loss("robust", pair(), LossSettings(beta=0.5, label_smoothing=0.1))
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    # without smoothing it is plain DPO
    plain = preference_loss("robust", pair(), LossSettings(beta=0.5, label_smoothing=0.0))
    assert plain.loss.item() == pytest.approx(0.3132617, abs=1e-6)


def test_hinge():
    assert preference_loss("hinge", pair(), LossSettings(beta=0.5)).loss.item() == pytest.approx(0.0)
    assert preference_loss("hinge", pair(), LossSettings(beta=0.25)).loss.item() == pytest.approx(0.5)


def test_simpo_is_reference_free_and_length_normalised():
    # per-token log-probs: chosen -1/2, rejected -3/4 -> beta 2 * 0.25 - gamma 0.5 = 0 -> log 2
    out = preference_loss("simpo", pair(ref=False), LossSettings(beta=2.0, simpo_gamma=0.5))
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(-1.0)  # beta * per-token log-prob
    assert out.rejected_rewards.item() == pytest.approx(-1.5)


def test_reference_losses_refuse_to_run_without_reference():
    for name in ("sigmoid", "hinge", "robust", "ipo"):
        with pytest.raises((ValueError, AssertionError)):
            preference_loss(name, pair(ref=False), LossSettings())


def test_nll_term_adds_to_any_loss():
    # NLL of chosen per token: 1 / 2 tokens = 0.5; weight 2 -> +1.0
    for name in LOSSES:
        base = preference_loss(name, pair(), LossSettings(beta=0.5)).loss.item()
        rpo = preference_loss(name, pair(), LossSettings(beta=0.5, nll_weight=2.0))
        assert rpo.nll.item() == pytest.approx(0.5)
        assert rpo.loss.item() == pytest.approx(base + 1.0, abs=1e-6)


def test_loss_averages_over_pairs_and_gradient_points_the_right_way():
    chosen = torch.tensor([-1.0, -2.0], requires_grad=True)
    p = PairLogps(chosen, torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]),
                  torch.tensor([2.0, 2.0]), torch.tensor([4.0, 4.0]))
    out = preference_loss("sigmoid", p, LossSettings(beta=1.0))
    per = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(1.0))]  # margins 2 and -1
    assert out.loss.item() == pytest.approx(sum(per) / 2, abs=1e-6)
    out.loss.backward()
    assert (chosen.grad < 0).all()  # raising the chosen log-prob lowers the loss


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="unknown loss 'dpo2'"):
        preference_loss("dpo2", pair(), LossSettings())


def test_robust_refuses_half_smoothing_instead_of_dividing_by_zero():
    # label_smoothing = 0.5 made the loss inf/nan and trained the adapter into NaNs without a word
    with pytest.raises(ValueError, match="label_smoothing"):
        preference_loss("robust", pair(), LossSettings(beta=0.5, label_smoothing=0.5))


def test_k3_is_the_schulman_estimator_and_never_negative():
    from studio.train.sampling import k3

    logp = torch.tensor([-1.0, -2.0, -0.5, -3.0])
    ref = torch.tensor([-1.0, -1.0, -2.5, -3.5])
    ratio = torch.exp(ref - logp)  # r = p_ref / p_pi per token
    expected = (ratio - 1) - torch.log(ratio)
    torch.testing.assert_close(k3(logp, ref), expected)
    assert k3(logp, ref)[0] == 0 and (k3(logp, ref) >= 0).all()
    # unbiased for KL(pi || ref): on samples from pi its mean approaches the exact KL
    pi, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    samples = torch.multinomial(pi, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = k3(pi.log()[samples], q.log()[samples]).mean()
    assert estimate.item() == pytest.approx((pi * (pi / q).log()).sum().item(), abs=0.01)
