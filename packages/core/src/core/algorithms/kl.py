"""KL estimators between the policy and the reference model, and KL-coefficient controllers.

Per-token estimators of KL(pi || ref) from log-probs of the sampled tokens, [batch, response_len]
(d = logprobs - ref_logprobs):
  k1            d
  abs           |d|
  k2            d^2 / 2
  k3/low_var_kl exp(-d) + d - 1, clamped to [-10, 10]  (Schulman's unbiased, low-variance estimator)
A "+" suffix (e.g. "k3+") keeps the estimator's value but takes k2's gradient (straight-through),
which is the unbiased gradient of the KL for on-policy samples.
Use `kl_penalized_rewards` for KL in the reward, or `aggregate_loss` over `kl_estimate` for KL in
the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from core.algorithms.masked import masked_sum
from core.errors import TandemError

LOG_RATIO_CLAMP = 20.0
LOW_VAR_KL_CLAMP = 10.0

KL_ESTIMATORS = ("k1", "abs", "k2", "k3", "low_var_kl")


def _base_estimate(log_ratio: torch.Tensor, estimator: str) -> torch.Tensor:
    if estimator == "k1":
        return log_ratio
    if estimator == "abs":
        return log_ratio.abs()
    if estimator == "k2":
        return 0.5 * log_ratio.square()
    # k3: with x = ref - logp, exp(x) - x - 1; x is clamped first so exp never overflows to inf
    x = torch.clamp(-log_ratio, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return torch.clamp(torch.exp(x) - x - 1, -LOW_VAR_KL_CLAMP, LOW_VAR_KL_CLAMP)


def check_kl_estimator(estimator: str) -> None:
    if estimator.removesuffix("+") not in KL_ESTIMATORS:
        valid = ", ".join(KL_ESTIMATORS)
        raise TandemError(f"algorithm.kl_estimator={estimator!r} is unknown; valid: {valid} (each optionally with '+')")


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL estimate [batch, response_len] (see the module doc for the estimators)."""
    check_kl_estimator(estimator)
    log_ratio = logprobs - ref_logprobs
    value = _base_estimate(log_ratio, estimator.removesuffix("+"))
    if not estimator.endswith("+"):
        return value
    k2 = 0.5 * log_ratio.square()
    return k2 - k2.detach() + value.detach()


def kl_penalized_rewards(
    token_rewards: torch.Tensor, token_kl: torch.Tensor, response_mask: torch.Tensor, coef: float
) -> torch.Tensor:
    """KL in the reward: token_rewards - coef * kl at unmasked positions (no gradient)."""
    penalty = torch.where(response_mask.bool(), token_kl.detach(), torch.zeros_like(token_kl))
    return token_rewards - coef * penalty


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, coef: float):
        self.value = coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt; present so both controllers are used the same way."""


class AdaptiveKLController:
    """Ziegler et al.'s proportional controller: steer the measured KL towards `target`.

    coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon, n_steps being the number of
    samples the KL was measured on.
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise TandemError(f"adaptive KL needs algorithm.kl_target > 0 and kl_horizon > 0, got {target}, {horizon}")
        self.value = init_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def make_kl_controller(coef: float, target: Optional[float] = None, horizon: int = 10000):
    """FixedKLController, or AdaptiveKLController when a KL target is set (algorithm.kl_target)."""
    return FixedKLController(coef) if target is None else AdaptiveKLController(coef, target, horizon)


@dataclass
class KLRewardResult:
    """Output of `apply_kl_in_reward`."""

    token_rewards: torch.Tensor  # [batch, response_len], penalised
    mean_kl: float  # masked mean per-token KL, the controller's input
    coef: float  # the coefficient that was applied (before the controller's update)


def apply_kl_in_reward(
    token_rewards: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    response_mask: torch.Tensor,
    controller,
    estimator: str = "k1",
) -> KLRewardResult:
    """Penalise rewards with the controller's current coefficient, then update it on this batch.

    The controller sees the batch mean of each sequence's token-mean KL (as in verl), with
    n_steps = batch size.
    """
    token_kl = kl_estimate(logprobs.detach(), ref_logprobs.detach(), estimator)
    coef = controller.value
    penalized = kl_penalized_rewards(token_rewards, token_kl, response_mask, coef)
    seq_kl = masked_sum(token_kl, response_mask, dim=-1) / response_mask.sum(-1).clamp(min=1)
    mean_kl = float(seq_kl.mean()) if seq_kl.numel() else 0.0
    controller.update(mean_kl, n_steps=token_rewards.shape[0])
    return KLRewardResult(token_rewards=penalized, mean_kl=mean_kl, coef=coef)
