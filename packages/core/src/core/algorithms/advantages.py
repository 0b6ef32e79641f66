"""Advantage estimators: GAE, GRPO, Dr.GRPO, RLOO, OPO, GPG, REINFORCE++ (and its group baseline), ReMax.

Shapes: token_rewards, response_mask, values: [batch, response_len]; group_ids: [batch] (responses
to the same prompt share an id); baseline_rewards: [batch]. Each estimator returns
(advantages, returns), both [batch, response_len] and zero at masked positions. Estimators
without a critic return their advantages as returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch

from core.algorithms.masked import group_index, group_mean_std, masked_whiten
from core.errors import TandemError

GROUP_STD_EPS = 1e-6

AdvantagesAndReturns = Tuple[torch.Tensor, torch.Tensor]


def _zero_masked(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), values, torch.zeros_like(values))


def sequence_scores(token_rewards: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Sum of the unmasked token rewards of each response: [batch]."""
    return _zero_masked(token_rewards, response_mask).sum(-1)


def _broadcast(scores: torch.Tensor, response_mask: torch.Tensor) -> AdvantagesAndReturns:
    advantages = scores.unsqueeze(-1) * response_mask.to(scores.dtype)
    return advantages, advantages


@torch.no_grad()
def gae_advantages(
    token_rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float, lam: float
) -> AdvantagesAndReturns:
    """GAE over response tokens; returns = advantages + values; advantages whitened over the mask.

    delta_t = r_t + gamma * V_next - V_t;  A_t = delta_t + gamma * lam * A_next.
    A masked-out position carries V_next and A_next through unchanged, so holes in the mask are
    skipped as if the surrounding tokens were adjacent.
    """
    mask = response_mask.bool()
    next_value = torch.zeros_like(values[:, 0])
    running = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        step = delta + gamma * lam * running
        running = torch.where(mask[:, t], step, running)
        next_value = torch.where(mask[:, t], values[:, t], next_value)
        advantages[:, t] = running
    returns = _zero_masked(advantages + values, response_mask)
    return masked_whiten(advantages, response_mask), returns


@torch.no_grad()
def grpo_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, group_ids: torch.Tensor, scale_by_std: bool = True
) -> AdvantagesAndReturns:
    """(score - group mean) / (unbiased group std + 1e-6), broadcast over the response tokens.

    scale_by_std=False is Dr.GRPO. A group of one has mean 0 and std 1 (its score passes through).
    """
    scores = sequence_scores(token_rewards, response_mask)
    mean, std, _ = group_mean_std(scores, group_ids)
    centered = scores - mean
    return _broadcast(centered / (std + GROUP_STD_EPS) if scale_by_std else centered, response_mask)


@torch.no_grad()
def rloo_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, group_ids: torch.Tensor
) -> AdvantagesAndReturns:
    """Score minus the mean score of the *other* responses of its group; a group of one keeps its score."""
    scores = sequence_scores(token_rewards, response_mask)
    mean, _, size = group_mean_std(scores, group_ids)
    # mean of the others = (n * mean - score) / (n - 1)  =>  score - that = n / (n - 1) * (score - mean)
    leave_one_out = torch.where(size > 1, size / (size - 1).clamp(min=1) * (scores - mean), scores)
    return _broadcast(leave_one_out, response_mask)


@torch.no_grad()
def opo_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, group_ids: torch.Tensor
) -> AdvantagesAndReturns:
    """OPO: score minus its group's length-weighted mean score, sum_j |y_j| s_j / sum_j |y_j| (the
    baseline that minimises the gradient variance under on-policy sampling); a group of one keeps
    its score, as in verl."""
    scores = sequence_scores(token_rewards, response_mask)
    lengths = response_mask.to(scores.dtype).sum(-1)
    dense, num_groups = group_index(group_ids)
    dense = dense.to(scores.device)
    weighted = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add_(0, dense, lengths * scores)
    total_length = torch.zeros_like(weighted).index_add_(0, dense, lengths)
    size = torch.zeros_like(weighted).index_add_(0, dense, torch.ones_like(scores))[dense]
    baseline = torch.where(size > 1, weighted[dense] / total_length[dense].clamp(min=1), torch.zeros_like(scores))
    return _broadcast(scores - baseline, response_mask)


@torch.no_grad()
def gpg_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, group_ids: torch.Tensor, f_norm: float = 1.0
) -> AdvantagesAndReturns:
    """GPG: alpha * (score - group mean) / f_norm, alpha = rows / rows with a non-zero score (clamped
    to >= 1 row), which scales up the signal when most responses score 0; no std division."""
    scores = sequence_scores(token_rewards, response_mask)
    mean, _, _ = group_mean_std(scores, group_ids)
    alpha = scores.numel() / max(int(torch.count_nonzero(scores)), 1)
    return _broadcast(alpha * (scores - mean) / f_norm, response_mask)


def discounted_returns(token_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return-to-go G_t = r_t + gamma * G_next over response tokens; masked positions carry G through."""
    mask = response_mask.bool()
    running = torch.zeros_like(token_rewards[:, 0])
    returns = torch.zeros_like(token_rewards)
    for t in reversed(range(token_rewards.shape[1])):
        running = torch.where(mask[:, t], token_rewards[:, t] + gamma * running, running)
        returns[:, t] = running
    return _zero_masked(returns, response_mask)


@torch.no_grad()
def reinforce_pp_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float
) -> AdvantagesAndReturns:
    """REINFORCE++: discounted return-to-go, whitened over the mask (the whole batch is the baseline)."""
    returns = discounted_returns(token_rewards, response_mask, gamma)
    return masked_whiten(returns, response_mask), returns


@torch.no_grad()
def reinforce_pp_baseline_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, group_ids: torch.Tensor
) -> AdvantagesAndReturns:
    """REINFORCE++-baseline: (score - group mean) broadcast over the tokens, then whitened over the mask.

    As in the paper and verl this is an outcome estimator (gamma plays no part); a group of one
    keeps its score before whitening.
    """
    scores = sequence_scores(token_rewards, response_mask)
    mean, _, _ = group_mean_std(scores, group_ids)
    centered, _ = _broadcast(scores - mean, response_mask)
    advantages = masked_whiten(centered, response_mask)
    return advantages, advantages


@torch.no_grad()
def remax_advantages(
    token_rewards: torch.Tensor, response_mask: torch.Tensor, baseline_rewards: torch.Tensor, gamma: float
) -> AdvantagesAndReturns:
    """ReMax: return-to-go minus the reward of the greedy response to the same prompt ([batch])."""
    returns = discounted_returns(token_rewards, response_mask, gamma)
    advantages = _zero_masked(returns - baseline_rewards.unsqueeze(-1).to(returns.dtype), response_mask)
    return advantages, returns


@dataclass
class _EstimatorInputs:
    estimator: str
    token_rewards: torch.Tensor
    response_mask: torch.Tensor
    group_ids: Optional[torch.Tensor]
    values: Optional[torch.Tensor]
    baseline_rewards: Optional[torch.Tensor]
    gamma: float
    lam: float

    def need(self, name: str) -> torch.Tensor:
        value = getattr(self, name)
        if value is None:
            raise TandemError(f"algorithm.adv_estimator={self.estimator} needs {name}, but none were given")
        return value


_ESTIMATORS: Dict[str, Callable[[_EstimatorInputs], AdvantagesAndReturns]] = {
    "grpo": lambda x: grpo_advantages(x.token_rewards, x.response_mask, x.need("group_ids")),
    "dr_grpo": lambda x: grpo_advantages(x.token_rewards, x.response_mask, x.need("group_ids"), scale_by_std=False),
    "rloo": lambda x: rloo_advantages(x.token_rewards, x.response_mask, x.need("group_ids")),
    "reinforce_pp": lambda x: reinforce_pp_advantages(x.token_rewards, x.response_mask, x.gamma),
    "reinforce_pp_baseline": lambda x: reinforce_pp_baseline_advantages(
        x.token_rewards, x.response_mask, x.need("group_ids")
    ),
    "remax": lambda x: remax_advantages(x.token_rewards, x.response_mask, x.need("baseline_rewards"), x.gamma),
    "opo": lambda x: opo_advantages(x.token_rewards, x.response_mask, x.need("group_ids")),
    "gpg": lambda x: gpg_advantages(x.token_rewards, x.response_mask, x.need("group_ids")),
    "gae": lambda x: gae_advantages(x.token_rewards, x.need("values"), x.response_mask, x.gamma, x.lam),
}

ADVANTAGE_ESTIMATORS = tuple(_ESTIMATORS)


def compute_advantages(
    estimator: str,
    *,
    token_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    group_ids: Optional[torch.Tensor] = None,
    values: Optional[torch.Tensor] = None,
    baseline_rewards: Optional[torch.Tensor] = None,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> AdvantagesAndReturns:
    """Run the estimator named by `algorithm.adv_estimator`; returns (advantages, returns)."""
    if estimator not in _ESTIMATORS:
        raise TandemError(
            f"algorithm.adv_estimator={estimator!r} is unknown; valid: {', '.join(ADVANTAGE_ESTIMATORS)}"
        )
    if group_ids is not None:
        group_ids = torch.as_tensor(group_ids)
    inputs = _EstimatorInputs(estimator, token_rewards, response_mask, group_ids, values, baseline_rewards, gamma, lam)
    return _ESTIMATORS[estimator](inputs)
