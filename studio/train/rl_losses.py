"""The maths of reward modelling, PPO and RLOO as small pure functions, each tested on hand-made tensors.

Per-token quantities of a batch of responses are [N, L] tensors, response i's tokens at columns 0 .. len_i - 1
and `mask` (bool, [N, L]) true there; whatever sits at masked positions is ignored or comes out as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------- reward model


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       center_coefficient: float = 0.0) -> torch.Tensor:
    """-log sigmoid(r_chosen - r_rejected - margin), averaged over pairs: the Bradley-Terry likelihood of the
    preferences (Bradley & Terry 1952; as a reward-model loss Ouyang et al. 2022, "Training language models to
    follow instructions with human feedback", eq. 1). `margin` per pair asks for a gap that grows with the
    label's strength (Touvron et al. 2023, "Llama 2", eq. 2). `center_coefficient` adds
    c * mean((r_chosen + r_rejected)^2), which pushes the mean reward to 0 (Eisenstein et al. 2023, "Helping
    or Herding?"), as TRL's center_rewards_coefficient."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - margin
    loss = -F.logsigmoid(diff).mean()
    if center_coefficient:
        loss = loss + center_coefficient * ((chosen + rejected) ** 2).mean()
    return loss


# ---------------------------------------------------------------------------------------------- masked statistics


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the true positions of mask (0 when there are none)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of x over the true positions of mask (0 with fewer than two)."""
    mean = masked_mean(x, mask)
    m = mask.to(x.dtype)
    n = m.sum()
    if n < 2:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return (((x - mean) ** 2) * m).sum() / (n - 1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions, masked positions set to 0; with shift_mean=False the mean
    is added back (the rewards of Ziegler et al. 2019 are scaled, not shifted). Whitening the advantages of a
    batch is one of PPO's implementation details (Huang et al. 2022, "The 37 Implementation Details of PPO",
    detail 7)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out.masked_fill(~mask, 0.0)


# ---------------------------------------------------------------------------------------------- rewards


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) on tokens sampled from pi (Schulman 2020, "Approximating KL
    Divergence"): k1 = log pi - log ref (unbiased; summed over a response, the response's log-ratio), k3 =
    exp(r) - 1 - r with r = log ref - log pi (unbiased too, never negative)."""
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        r = ref_logprobs - logprobs
        return torch.expm1(r) - r
    raise ValueError(f"kl_estimator: unknown estimator {estimator!r}; known: k1, k3")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """The per-token reward of RLHF with a KL penalty (Ziegler et al. 2019, eq. 2; Stiennon et al. 2020): -kl_coef
    * KL at every response token, plus the response's score at its last token. [N, L], 0 where masked."""
    rewards = (-kl_coef * kl).masked_fill(~mask, 0.0)
    last = mask.long().sum(1) - 1
    rows = torch.arange(len(scores), device=scores.device)
    has_tokens = last >= 0
    rewards[rows[has_tokens], last[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards


def apply_missing_eos_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float) -> torch.Tensor:
    """The scores with `penalty` taken off the responses that never ended (cut at max_new_tokens): without it
    the policy can learn to ramble into the length cap, a reward model having never seen such text."""
    return scores - penalty * (~finished).to(scores.dtype)


# ---------------------------------------------------------------------------------------------- PPO


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, "High-Dimensional Continuous Control Using
    Generalized Advantage Estimation", eq. 16): delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum_l (gamma
    lambda)^l delta_{t+l}, the value after a response's last token being 0 (the episode ends). Returns the
    advantages and the returns A + V, both 0 where masked."""
    values = values.masked_fill(~mask, 0.0)
    rewards = rewards.masked_fill(~mask, 0.0)
    n, length = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    advantages = advantages.masked_fill(~mask, 0.0)
    return advantages, (advantages + values).masked_fill(~mask, 0.0)


@dataclass
class PolicyLoss:
    loss: torch.Tensor  # scalar, to backpropagate
    clipfrac: torch.Tensor  # share of the terms where the clipped one was taken (detached)
    approxkl: torch.Tensor  # 0.5 * mean squared log-ratio to the rollout policy (detached)
    ratio: torch.Tensor  # mean probability ratio (detached)


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, cliprange: float) -> PolicyLoss:
    """PPO's clipped surrogate (Schulman et al. 2017, "Proximal Policy Optimization Algorithms", eq. 7), as a
    loss: mean over the masked terms of max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)), ratio = exp(log pi -
    log pi_old). Works per token ([N, L] with a mask) and per sequence ([N] with an all-true mask)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
        approxkl = 0.5 * masked_mean(log_ratio.detach() ** 2, mask)
        mean_ratio = masked_mean(ratio.detach(), mask)
    return PolicyLoss(loss, clipfrac, approxkl, mean_ratio)


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped value loss (as in OpenAI's baselines ppo2, and Ziegler et al.'s lm-human-preferences): 0.5 *
    mean of max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2), so the value moves no further than the
    policy does per batch. Returns the loss and the share of terms where the clipped one was taken."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


# ---------------------------------------------------------------------------------------------- RLOO


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE Leave-One-Out: each response's advantage is its reward minus the mean reward of the other k - 1
    responses to the same prompt (Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!";
    Ahmadian et al. 2024, "Back to Basics", eq. 7). `rewards` [P * k] is prompt-major (the k responses of
    prompt 0, then of prompt 1, ...), as `generation.generate` returns them."""
    if k < 2:
        raise ValueError(f"rloo_k: the leave-one-out baseline needs at least 2 responses per prompt, got {k}")
    if rewards.numel() % k:
        raise ValueError(f"rloo: {rewards.numel()} rewards are not a whole number of groups of {k}")
    grouped = rewards.view(-1, k)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).reshape(-1)


# ---------------------------------------------------------------------------------------------- KL coefficient


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, value: float):
        self.value = float(value)

    def update(self, kl: float, n_responses: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """The adaptive KL coefficient of Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences",
    section 2.2): after each batch, beta <- beta * (1 + e * n / horizon) with e = clip(KL / target - 1, -0.2,
    0.2) and n the responses in the batch, so the KL per response drifts towards `target`."""

    def __init__(self, value: float, target: float, horizon: int):
        super().__init__(value)
        self.target, self.horizon = float(target), int(horizon)

    def update(self, kl: float, n_responses: int) -> None:
        if not math.isfinite(kl):
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_responses / self.horizon
