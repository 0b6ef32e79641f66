"""Policy-gradient losses: clipped PPO (clip-higher, dual clip), GSPO, CISPO, plain REINFORCE (= GPG's
loss); Clip-Cov and KL-Cov live in covariance_losses.py.

Shapes: logprobs, old_logprobs, advantages, response_mask: [batch, response_len]. Each loss builds
per-token terms and aggregates them with `aggregate_loss` (so the result is this micro-batch's
share of the step loss, see aggregation.py). Metrics are masked means over this micro-batch.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from typing import Callable, Dict, Optional

import torch

from core.algorithms.aggregation import aggregate_loss, check_loss_agg_mode
from core.algorithms.covariance_losses import clip_cov_token_losses, kl_cov_token_losses
from core.algorithms.masked import LOG_RATIO_CLAMP, TokenLossesAndMetrics, approx_kl as _approx_kl
from core.algorithms.masked import masked_mean, masked_sum
from core.config.schema import AlgorithmConfig
from core.errors import TandemError


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


def cispo_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_ratio_low: float = 0.2,
    clip_ratio_high: float = 0.2,
) -> TokenLossesAndMetrics:
    """CISPO (MiniMax-M1): -sg[clip(r, 1-low, 1+high)] * A * log pi.

    The clipped ratio is a constant weight, so unlike PPO no token loses its gradient to clipping:
    d/d log pi_t = -w_t A_t. r = exp(clamp(logprobs - old_logprobs, -20, 20)), as in verl.
    """
    log_ratio = torch.clamp(logprobs - old_logprobs, -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio.detach())
    weight = torch.clamp(ratio, 1.0 - clip_ratio_low, 1.0 + clip_ratio_high)
    metrics = {
        "clip_frac": float(masked_mean((weight != ratio).float(), response_mask)),
        "approx_kl": _approx_kl(log_ratio, response_mask),
    }
    return -weight * advantages * logprobs, metrics


def reinforce_token_losses(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, response_mask: torch.Tensor
) -> TokenLossesAndMetrics:
    """Plain REINFORCE: -A * log pi (on-policy; old_logprobs only feed the approx-KL metric). GPG's
    loss is this one (its difference is the estimator, `adv_estimator=gpg`)."""
    return -advantages * logprobs, {"approx_kl": _approx_kl(logprobs - old_logprobs, response_mask)}


@dataclass(frozen=True)
class PolicyLossOptions:
    """The `algorithm` keys the policy losses read, with the config's defaults (AlgorithmConfig's). Each loss
    takes the fields it declares as parameters (`for_loss`); a misspelt option is a TypeError here, never a silent
    default."""

    clip_ratio_low: float = AlgorithmConfig.clip_ratio_low
    clip_ratio_high: float = AlgorithmConfig.clip_ratio_high  # > clip_ratio_low: DAPO's clip-higher
    clip_ratio_c: float = AlgorithmConfig.clip_ratio_c  # ppo_clip's dual-clip bound for negative advantages
    clip_cov_ratio: float = AlgorithmConfig.clip_cov_ratio  # clip_cov: share of tokens whose gradient is cut
    clip_cov_lb: float = AlgorithmConfig.clip_cov_lb  # clip_cov: the covariance window they are drawn from
    clip_cov_ub: float = AlgorithmConfig.clip_cov_ub
    kl_cov_ratio: float = AlgorithmConfig.kl_cov_ratio  # kl_cov: share of largest-covariance tokens penalised
    kl_cov_coef: float = AlgorithmConfig.kl_cov_coef

    @classmethod
    def from_config(cls, algorithm) -> "PolicyLossOptions":
        return cls(**{f.name: float(getattr(algorithm, f.name)) for f in fields(cls)})

    def for_loss(self, loss: Callable[..., TokenLossesAndMetrics]) -> Dict[str, float]:
        """The options `loss` declares; the others belong to other losses."""
        return {name: getattr(self, name) for name in _declared_options(loss)}


@functools.lru_cache(maxsize=None)
def _declared_options(loss: Callable[..., TokenLossesAndMetrics]) -> tuple:
    """The option parameters of `loss` (after its four tensors), read once per loss, not per micro-batch."""
    return tuple(inspect.signature(loss).parameters)[4:]


_LOSSES: Dict[str, Callable[..., TokenLossesAndMetrics]] = {
    "ppo_clip": ppo_clip_token_losses,
    "gspo": gspo_token_losses,
    "cispo": cispo_token_losses,
    "clip_cov": clip_cov_token_losses,
    "kl_cov": kl_cov_token_losses,
    "reinforce": reinforce_token_losses,
    "gpg": reinforce_token_losses,
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
    token_weights: Optional[torch.Tensor] = None,
    options: PolicyLossOptions = PolicyLossOptions(),
) -> TokenLossesAndMetrics:
    """The policy loss named by `algorithm.policy_loss`, aggregated; returns (loss, metrics).

    `options`: the algorithm keys the losses read (clip ratios, Clip-Cov's and KL-Cov's); the loss takes those
    it declares. `token_weights` [batch, response_len], detached, scale the per-token losses before
    aggregation (rollout correction).
    """
    if name not in _LOSSES:
        raise TandemError(f"algorithm.policy_loss={name!r} is unknown; valid: {', '.join(POLICY_LOSSES)}")
    check_loss_agg_mode(loss_agg_mode)
    loss_fn = _LOSSES[name]
    token_losses, metrics = loss_fn(logprobs, old_logprobs, advantages, response_mask, **options.for_loss(loss_fn))
    if token_weights is not None:
        token_losses = token_losses * token_weights
    loss = aggregate_loss(
        token_losses, response_mask, loss_agg_mode, global_token_count, global_seq_count, horizon
    )
    return loss, metrics
