"""Policy-gradient losses: clipped PPO (clip-higher, dual clip), GSPO, plain REINFORCE.

Shapes: logprobs, old_logprobs, advantages, response_mask: [batch, response_len]. Each loss builds
per-token terms and aggregates them with `aggregate_loss` (so the result is this micro-batch's
share of the step loss, see aggregation.py). Metrics are masked means over this micro-batch.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from core.algorithms.aggregation import aggregate_loss, check_loss_agg_mode
from core.algorithms.masked import masked_mean, masked_sum
from core.errors import TandemError

LOG_RATIO_CLAMP = 20.0

TokenLossesAndMetrics = Tuple[torch.Tensor, Dict[str, float]]


def _approx_kl(log_ratio: torch.Tensor, response_mask: torch.Tensor) -> float:
    # k1 estimate of KL(old || new): mean of log(old / new) over the sampled tokens
    return float(masked_mean(-log_ratio.detach(), response_mask))


def ppo_clip_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float = 3.0,
) -> TokenLossesAndMetrics:
    """max(-A r, -A clip(r, 1-low, 1+high)), and for A < 0 at most -A * clip_ratio_c (dual clip).

    r = exp(clamp(logprobs - old_logprobs, -20, 20)). clip_ratio_high > clip_ratio_low is DAPO's
    clip-higher.
    """
    log_ratio = torch.clamp(logprobs - old_logprobs, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    pessimistic = torch.maximum(unclipped, clipped)
    dual_bound = -advantages * clip_ratio_c
    losses = torch.where(advantages < 0, torch.minimum(pessimistic, dual_bound), pessimistic)
    metrics = {
        "clip_frac": float(masked_mean((clipped > unclipped).float(), response_mask)),
        "clip_frac_lower": float(masked_mean(((pessimistic > dual_bound) & (advantages < 0)).float(), response_mask)),
        "approx_kl": _approx_kl(log_ratio, response_mask),
    }
    return losses, metrics


def gspo_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float = 3e-4,
    clip_ratio_high: float = 4e-4,
) -> TokenLossesAndMetrics:
    """GSPO: PPO clipping on the sequence ratio s_i = exp(masked mean of the token log-ratios).

    Token form s_it = sg[s_i] * pi_t / sg[pi_t]: its value is s_i and its gradient w.r.t. log pi_t
    is s_i, which with seq-mean-token-mean aggregation gives the paper's s_i / |y_i| per token.
    The paper's clip ranges are ~3e-4 / 4e-4, far narrower than PPO's.
    """
    log_ratio = logprobs - old_logprobs
    seq_log_ratio = masked_sum(log_ratio, response_mask, dim=-1) / response_mask.sum(-1).clamp(min=1)
    seq_log_ratio = torch.clamp(seq_log_ratio.detach(), -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(logprobs - logprobs.detach() + seq_log_ratio.unsqueeze(-1))
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    losses = torch.maximum(unclipped, clipped)
    metrics = {
        "clip_frac": float(masked_mean((clipped > unclipped).float(), response_mask)),
        "approx_kl": _approx_kl(log_ratio, response_mask),
    }
    return losses, metrics


def reinforce_token_losses(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor
) -> TokenLossesAndMetrics:
    """Plain REINFORCE: -A * log pi (on-policy; old_logprobs only feed the approx-KL metric)."""
    return -advantages * logprobs, {"approx_kl": _approx_kl(logprobs - old_logprobs, response_mask)}


_LOSSES: Dict[str, Callable[..., TokenLossesAndMetrics]] = {
    "ppo_clip": lambda lp, old, adv, m, low, high, c: ppo_clip_token_losses(lp, old, adv, m, low, high, c),
    "gspo": lambda lp, old, adv, m, low, high, c: gspo_token_losses(lp, old, adv, m, low, high),
    "reinforce": lambda lp, old, adv, m, low, high, c: reinforce_token_losses(lp, old, adv, m),
}

POLICY_LOSSES = tuple(_LOSSES)


def compute_policy_loss(
    name: str,
    *,
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    loss_agg_mode: str,
    global_token_count: int,
    global_seq_count: int,
    horizon: Optional[int] = None,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
    clip_ratio_c: float = 3.0,
) -> TokenLossesAndMetrics:
    """The policy loss named by `algorithm.policy_loss`, aggregated; returns (loss, metrics)."""
    if name not in _LOSSES:
        raise TandemError(f"algorithm.policy_loss={name!r} is unknown; valid: {', '.join(POLICY_LOSSES)}")
    check_loss_agg_mode(loss_agg_mode)
    token_losses, metrics = _LOSSES[name](
        logprobs, old_logprobs, advantages, response_mask, clip_ratio_low, clip_ratio_high, clip_ratio_c
    )
    loss = aggregate_loss(
        token_losses, response_mask, loss_agg_mode, global_token_count, global_seq_count, horizon
    )
    return loss, metrics
