"""The DPO loss family as small pure functions keyed by name, each tested on hand-made tensors.

Every loss takes the summed completion log-probs of the policy (and of the reference, when it uses one)
for the chosen and rejected responses of each pair, plus the completion token counts, and returns the
per-pair loss. `preference_loss` adds the optional NLL term (RPO) and the implicit rewards for metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PairLogps:
    """Per-pair sums of completion-token log-probs ([B] each) and completion lengths in tokens."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None
    ref_rejected: torch.Tensor | None
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor

    def logratio_margin(self) -> torch.Tensor:
        """(log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)): DPO's implicit reward margin / beta."""
        if self.ref_chosen is None or self.ref_rejected is None:
            raise ValueError("this loss needs reference log-probs")
        return (self.chosen - self.ref_chosen) - (self.rejected - self.ref_rejected)


@dataclass(frozen=True)
class LossSettings:
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    nll_weight: float = 0.0


def sigmoid_loss(p: PairLogps, s: LossSettings) -> torch.Tensor:
    """DPO: -log sigmoid(beta * margin). Rafailov et al. 2023, "Direct Preference Optimization: Your Language
    Model is Secretly a Reward Model" (eq. 7)."""
    return -F.logsigmoid(s.beta * p.logratio_margin())


def ipo_loss(p: PairLogps, s: LossSettings) -> torch.Tensor:
    """IPO: (h - 1 / (2 beta))^2 with h the per-token-averaged log-ratio margin. Azar et al. 2023, "A General
    Theoretical Paradigm to Understand Learning from Human Preferences" (eq. 17). The length normalisation is
    the one TRL uses, confirmed by the IPO authors to match the paper's experiments."""
    assert p.ref_chosen is not None and p.ref_rejected is not None, "IPO needs reference log-probs"
    chosen = (p.chosen - p.ref_chosen) / p.chosen_tokens.clamp(min=1)
    rejected = (p.rejected - p.ref_rejected) / p.rejected_tokens.clamp(min=1)
    return (chosen - rejected - 1 / (2 * s.beta)) ** 2


def robust_loss(p: PairLogps, s: LossSettings) -> torch.Tensor:
    """Robust DPO for noisy labels: an unbiased estimate of the clean loss when a share epsilon
    (label_smoothing) of the labels are flipped. Chowdhury et al. 2024, "Provably Robust DPO: Aligning
    Language Models with Noisy Feedback" (eq. 5); the conservative variant (cDPO, Mitchell 2023) is the same
    family with a plus sign."""
    eps = s.label_smoothing
    if not 0 <= eps < 0.5:
        raise ValueError(f"label_smoothing: the robust loss needs 0 <= label_smoothing < 0.5, got {eps}")
    logits = s.beta * p.logratio_margin()
    return (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)


def hinge_loss(p: PairLogps, s: LossSettings) -> torch.Tensor:
    """Hinge on the margin: max(0, 1 - beta * margin). Zhao et al. 2023, "SLiC-HF: Sequence Likelihood
    Calibration with Human Feedback" (the rank-calibration loss, with the reference as in TRL)."""
    return torch.relu(1 - s.beta * p.logratio_margin())


def simpo_loss(p: PairLogps, s: LossSettings) -> torch.Tensor:
    """SimPO: reference-free, length-normalised: -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l)
    - gamma). Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward" (eq. 6)."""
    chosen = p.chosen / p.chosen_tokens.clamp(min=1)
    rejected = p.rejected / p.rejected_tokens.clamp(min=1)
    return -F.logsigmoid(s.beta * (chosen - rejected) - s.simpo_gamma)


LossFn = Callable[[PairLogps, LossSettings], torch.Tensor]

LOSSES: dict[str, LossFn] = {
    "sigmoid": sigmoid_loss,
    "ipo": ipo_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "simpo": simpo_loss,
}

REFERENCE_FREE = frozenset({"simpo"})


def needs_reference(loss_type: str) -> bool:
    return loss_type not in REFERENCE_FREE


def nll_term(p: PairLogps) -> torch.Tensor:
    """Mean per-token negative log-likelihood of the chosen responses. Added with a weight to any preference
    loss, this is RPO: Pang et al. 2024, "Iterative Reasoning Preference Optimization" (eq. 1)."""
    return -p.chosen.sum() / p.chosen_tokens.sum().clamp(min=1)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, to backpropagate
    per_pair: torch.Tensor  # [B] preference loss alone
    nll: torch.Tensor | None
    chosen_rewards: torch.Tensor  # [B], detached
    rejected_rewards: torch.Tensor


def preference_loss(loss_type: str, p: PairLogps, s: LossSettings) -> LossOutput:
    """The named preference loss averaged over pairs, plus `nll_weight` times the NLL term, with the implicit
    rewards TRL reports: beta * (log pi - log ref) (for SimPO, beta * the per-token log-prob)."""
    try:
        fn = LOSSES[loss_type]
    except KeyError:
        raise ValueError(f"loss_type: unknown loss {loss_type!r}; known: {', '.join(LOSSES)}") from None
    per_pair = fn(p, s)
    loss = per_pair.mean()
    nll = None
    if s.nll_weight > 0:
        nll = nll_term(p)
        loss = loss + s.nll_weight * nll
    with torch.no_grad():
        if needs_reference(loss_type):
            chosen_rewards = s.beta * (p.chosen - p.ref_chosen)
            rejected_rewards = s.beta * (p.rejected - p.ref_rejected)
        else:
            chosen_rewards = s.beta * p.chosen / p.chosen_tokens.clamp(min=1)
            rejected_rewards = s.beta * p.rejected / p.rejected_tokens.clamp(min=1)
    return LossOutput(loss, per_pair, nll, chosen_rewards.detach(), rejected_rewards.detach())
