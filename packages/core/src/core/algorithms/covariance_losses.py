"""Clip-Cov and KL-Cov (Cui et al. 2025, "The Entropy Mechanism of RL for Reasoning LMs").

Entropy collapses through a few tokens whose log-prob and advantage covary strongly. Both losses find
them by the per-token covariance term cov_t = (A_t - mean A) * (log pi_t - mean log pi) (means over
the unmasked tokens of this micro-batch, as in verl, detached) and treat a small share of them apart:
Clip-Cov drops their gradient, KL-Cov adds a |log-ratio| penalty to them. Being statistics of the
micro-batch, the picks depend on how a step is split into micro-batches, as in verl.

Shapes: logprobs, old_logprobs, advantages, response_mask: [batch, response_len]. Differences from
verl's core_algos, on purpose: the log-ratio is clamped to +-20 before exp as in every other loss here
(verl leaves it unclamped in these two), and Clip-Cov's random pick uses torch's global generator,
which the checkpoint saves, so a resumed run picks the same tokens.
"""

from __future__ import annotations

import torch

from core.algorithms.masked import LOG_RATIO_CLAMP, TokenLossesAndMetrics, approx_kl, masked_mean


def _token_covariance(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(A - mean A) * (log pi - mean log pi), means over the unmasked tokens; detached."""
    logprobs, advantages = logprobs.detach(), advantages.detach()
    return (advantages - masked_mean(advantages, mask)) * (logprobs - masked_mean(logprobs, mask))


def clip_cov_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
) -> TokenLossesAndMetrics:
    """PPO's clipped loss, with the gradient cut on max(1, int(clip_cov_ratio * tokens)) tokens drawn at
    random among those PPO did not clip whose covariance lies in (clip_cov_lb, clip_cov_ub)."""
    log_ratio = torch.clamp(logprobs - old_logprobs, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    valid = response_mask.bool()
    clipped_by_ppo = (clipped > unclipped) & valid
    cov = _token_covariance(logprobs, advantages, response_mask)
    candidates = torch.nonzero((cov > clip_cov_lb) & (cov < clip_cov_ub) & valid & ~clipped_by_ppo)
    count = max(int(clip_cov_ratio * int(valid.sum())), 1)
    chosen = candidates[torch.randperm(len(candidates))[:count].to(candidates.device)]
    keep = torch.ones_like(advantages)
    keep[chosen[:, 0], chosen[:, 1]] = 0.0
    metrics = {"clip_frac": float(masked_mean((keep == 0).float(), response_mask)),
               "approx_kl": approx_kl(log_ratio, response_mask)}
    return torch.maximum(unclipped, clipped) * keep, metrics


def kl_cov_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    kl_cov_ratio: float = 2e-4,
    kl_cov_coef: float = 1.0,
) -> TokenLossesAndMetrics:
    """-A r for every token (no clipping), plus kl_cov_coef * |log r| on the max(1, int(kl_cov_ratio *
    tokens)) tokens of largest covariance. verl calls kl_cov_coef `ppo_kl_coef`."""
    log_ratio = torch.clamp(logprobs - old_logprobs, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    losses = -advantages * torch.exp(log_ratio)
    valid = response_mask.bool()
    flat_valid = torch.nonzero(valid.reshape(-1), as_tuple=True)[0]
    if len(flat_valid):
        cov = _token_covariance(logprobs, advantages, response_mask).reshape(-1)[flat_valid]
        top = flat_valid[torch.topk(cov, max(1, int(len(flat_valid) * kl_cov_ratio))).indices]
        penalised = torch.zeros(valid.numel(), dtype=torch.bool, device=valid.device)
        penalised[top] = True
        losses = torch.where(penalised.view_as(valid), losses + kl_cov_coef * log_ratio.abs(), losses)
    metrics = {"approx_kl": approx_kl(log_ratio, response_mask),
               "abs_log_ratio": float(masked_mean(log_ratio.detach().abs(), response_mask))}
    return losses, metrics
