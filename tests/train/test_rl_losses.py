"""The reward-model, PPO and RLOO maths against values worked out by hand."""

import math

import pytest
import torch

from studio.train import rl_losses as R


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def close(x: torch.Tensor, expected) -> None:
    torch.testing.assert_close(x, torch.tensor(expected, dtype=x.dtype), atol=1e-6, rtol=1e-6)


def test_bradley_terry_with_margin_and_centering():
    chosen, rejected = t(1.0, 0.0), t(0.0, 0.0)
    softplus = lambda x: math.log1p(math.exp(-x))  # -log sigmoid(x)  # noqa: E731
    assert float(R.bradley_terry_loss(chosen, rejected)) == pytest.approx((softplus(1) + softplus(0)) / 2)
    # a margin of 0.5 on the first pair asks for a larger gap: its loss grows
    with_margin = R.bradley_terry_loss(chosen, rejected, margin=t(0.5, 0.0))
    assert float(with_margin) == pytest.approx((softplus(0.5) + softplus(0)) / 2)
    # centering adds c * mean((chosen + rejected)^2) = 0.1 * (1 + 0) / 2
    centred = R.bradley_terry_loss(chosen, rejected, center_coefficient=0.1)
    assert float(centred) == pytest.approx((softplus(1) + softplus(0)) / 2 + 0.05)


def test_whitening_uses_only_the_masked_positions():
    x = t([2.0, 4.0, 6.0, 100.0])
    mask = torch.tensor([[True, True, True, False]])
    # mean 4, unbiased variance 4: (x - 4) / 2; the masked 100 neither counts nor survives
    close(R.masked_whiten(x, mask), [[-1.0, 0.0, 1.0, 0.0]])
    close(R.masked_whiten(x, mask, shift_mean=False), [[3.0, 4.0, 5.0, 0.0]])
    assert float(R.masked_mean(x, mask)) == 4.0 and float(R.masked_var(x, mask)) == 4.0


def test_kl_estimators():
    logp, ref = t(-1.0), t(-2.0)
    assert float(R.per_token_kl(logp, ref, "k1")) == pytest.approx(1.0)
    assert float(R.per_token_kl(logp, ref, "k3")) == pytest.approx(math.exp(-1) - 1 + 1)
    with pytest.raises(ValueError, match="kl_estimator"):
        R.per_token_kl(logp, ref, "k2")


def test_token_rewards_put_the_score_on_each_response_s_last_token():
    kl = t([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    rewards = R.token_rewards(t(1.0, 2.0), kl, 0.5, mask)
    close(rewards, [[-0.05, -0.1 + 1.0, 0.0], [-0.2, -0.25, -0.3 + 2.0]])
    scores = R.apply_missing_eos_penalty(t(1.0, 2.0), torch.tensor([True, False]), 0.5)
    assert scores.tolist() == [1.0, 1.5]


def test_gae_by_hand():
    # gamma 1, lambda 0.5: deltas 0.1, 0.1, 0.3 (the value after the last token is 0)
    adv, ret = R.gae(t([0.0, 0.0, 1.0]), t([0.5, 0.6, 0.7]), torch.ones(1, 3, dtype=torch.bool), 1.0, 0.5)
    close(adv, [[0.225, 0.25, 0.3]])
    close(ret, [[0.725, 0.85, 1.0]])
    # a response of 2 tokens in a 3-wide batch: the padding's reward and value never leak in
    mask = torch.tensor([[True, True, False]])
    adv, ret = R.gae(t([0.0, 2.0, 9.0]), t([1.0, 1.0, 5.0]), mask, 0.9, 1.0)
    # t=1: 2 + 0.9 * 0 - 1 = 1; t=0: delta 0 + 0.9 * 1 - 1 = -0.1, A = -0.1 + 0.9 * 1 = 0.8
    close(adv, [[0.8, 1.0, 0.0]])
    close(ret, [[1.8, 2.0, 0.0]])


def test_clipped_policy_loss_by_hand():
    # ratios 1.5 (A=+1: clipped to 1.2), 0.5 (A=-1: clipped to 0.8), 1.1 (inside), 0.5 (A=+1: the unclipped
    # term is the pessimistic one)
    old = t(0.0, 0.0, 0.0, 0.0)
    new = torch.log(t(1.5, 0.5, 1.1, 0.5))
    adv = t(1.0, -1.0, 2.0, 1.0)
    out = R.clipped_policy_loss(new, old, adv, torch.ones(4, dtype=torch.bool), 0.2)
    assert float(out.loss) == pytest.approx((-1.2 + 0.8 - 2.2 - 0.5) / 4)
    assert float(out.clipfrac) == pytest.approx(0.5)
    assert float(out.approxkl) == pytest.approx(0.5 * sum(math.log(r) ** 2 for r in (1.5, 0.5, 1.1, 0.5)) / 4)
    assert float(out.ratio) == pytest.approx((1.5 + 0.5 + 1.1 + 0.5) / 4)
    # the gradient flows through the unclipped terms only
    new.requires_grad_(True)
    R.clipped_policy_loss(new, old, adv, torch.ones(4, dtype=torch.bool), 0.2).loss.backward()
    assert new.grad.tolist() == pytest.approx([0.0, 0.0, -2.0 * 1.1 / 4, -1.0 * 0.5 / 4])


def test_first_ratio_is_one_and_the_loss_is_minus_the_mean_advantage():
    logp = t([-1.0, -2.0], [-0.5, -3.0])
    mask = torch.tensor([[True, True], [True, False]])
    adv = t([1.0, 2.0], [3.0, 7.0])
    out = R.clipped_policy_loss(logp, logp.clone(), adv, mask, 0.2)
    assert float(out.loss) == pytest.approx(-(1 + 2 + 3) / 3)
    assert float(out.ratio) == 1.0 and float(out.approxkl) == 0.0 and float(out.clipfrac) == 0.0


def test_clipped_value_loss_by_hand():
    mask = torch.ones(2, dtype=torch.bool)
    # value 1.0 -> 1.5 towards a return of 2: clipped to 1.2, whose error (0.64) is the larger one
    # value 1.0 -> 0.9 towards 0: inside the clip range, error 0.81
    loss, clipfrac = R.clipped_value_loss(t(1.5, 0.9), t(1.0, 1.0), t(2.0, 0.0), mask, 0.2)
    assert float(loss) == pytest.approx(0.5 * (0.64 + 0.81) / 2)
    assert float(clipfrac) == pytest.approx(0.5)


def test_rloo_baseline_is_the_mean_of_the_other_responses():
    adv = R.rloo_advantages(t(1.0, 2.0, 3.0, 10.0, 10.0, 16.0), k=3)
    # prompt 1: baselines 2.5, 2, 1.5; prompt 2: 13, 13, 10
    assert adv.tolist() == pytest.approx([-1.5, 0.0, 1.5, -3.0, -3.0, 6.0])
    with pytest.raises(ValueError, match="at least 2"):
        R.rloo_advantages(t(1.0, 2.0), k=1)
    with pytest.raises(ValueError, match="whole number"):
        R.rloo_advantages(t(1.0, 2.0, 3.0), k=2)


def test_adaptive_kl_controller_moves_towards_the_target_within_its_clip():
    ctl = R.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(12.0, n_responses=100)  # error clipped to +0.2: x (1 + 0.2 * 100 / 10000)
    assert ctl.value == pytest.approx(0.1 * 1.002)
    ctl.update(6.6, n_responses=100)  # error +0.1
    assert ctl.value == pytest.approx(0.1 * 1.002 * 1.001)
    ctl.update(3.0, n_responses=100)  # error -0.5, clipped to -0.2
    assert ctl.value == pytest.approx(0.1 * 1.002 * 1.001 * 0.998)
    restored = R.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value
    fixed = R.FixedKLController(0.05)
    fixed.update(100.0, 100)
    assert fixed.value == 0.05
