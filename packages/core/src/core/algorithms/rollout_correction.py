"""Rollout/trainer mismatch: the engine samples with its own kernels and the trainer scores the same
tokens with other numerics, so the trainer's behaviour log-probs (`old`) are not those the tokens were
drawn with (`rollout`) and the update is slightly off-policy.

Measured every step the engine returns its log-probs (`rollout.logprobs=true`, or any correction):
  mismatch/abs_logprob_diff_mean, _max   |old - rollout| over the response tokens
  mismatch/token_mult_prob_error        masked mean of exp(|old - rollout|): NeMo-RL's metric (its CI
                                        gates on a median below 1.1; 1.0 is a perfect match)
Corrected in the policy loss (`algorithm.rollout_correction`, cap C = `algorithm.rollout_correction_cap`),
d = old - rollout:
  token_tis    weight min(exp(d_t), C)                        truncated importance sampling (per token)
  seq_tis      weight min(exp(sum_t d_t), C) on every token   the sequence's importance ratio, truncated
  token_mask   keep the token if 1/C <= exp(d_t) <= C          drop tokens the two engines disagree on
  seq_mask     keep the row if 1/C <= exp(mean_t d_t) <= C     drop whole sequences (geometric-mean ratio)
verl's rollout_is=token / sequence and rollout_rs=token / geometric are these, with its threshold as C, and
the same in what follows from them:
- the masks take the rejected tokens out of the response mask before anything is aggregated, so
  token-mean and seq-mean-token-mean divide by the tokens kept (`rejection_mask`, applied by the actor to
  the whole mini-batch, before its token counts: the behaviour log-probs come from their own pass then);
- the sequence modes sum (or average) the raw per-token log-ratios and clamp only the result at
  +-LOG_RATIO_CLAMP before exp: d = (30, -29, 0, 0), C = 2 gives min(e^1, 2) = 2 (clamping each token
  first would give e^0 = 1).

Shapes: old_logprobs, rollout_logprobs, response_mask: [rows, response_len].
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch

from core.algorithms.masked import LOG_RATIO_CLAMP, masked_mean, masked_sum

ROLLOUT_CORRECTIONS = ("none", "token_tis", "seq_tis", "token_mask", "seq_mask")


def mismatch_metrics(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                     response_mask: torch.Tensor) -> Dict[str, float]:
    """How far the trainer's scoring of the sampled tokens is from the engine's."""
    mask = response_mask.bool()
    diff = (old_logprobs.float() - rollout_logprobs.float()).abs()
    if not mask.any():
        return {}
    return {
        "mismatch/abs_logprob_diff_mean": float(masked_mean(diff, mask)),
        "mismatch/abs_logprob_diff_max": float(diff[mask].max()),
        "mismatch/token_mult_prob_error": float(masked_mean(torch.exp(diff * mask), mask)),
    }


MASK_MODES = ("token_mask", "seq_mask")


def _log_ratios(old_logprobs, rollout_logprobs, mask):
    """d = old - rollout on the response tokens (0 elsewhere), raw: each mode clamps what it exponentiates."""
    log_ratio = old_logprobs.detach().float() - rollout_logprobs.float()
    return torch.where(mask, log_ratio, torch.zeros_like(log_ratio))


def rejection_mask(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, response_mask: torch.Tensor,
                   mode: str, cap: float) -> torch.Tensor:
    """[rows, response_len] bool: the response tokens a mask mode keeps (token_mask, seq_mask)."""
    mask = response_mask.bool()
    log_ratio = _log_ratios(old_logprobs, rollout_logprobs, mask)
    log_cap = math.log(cap)
    if mode == "token_mask":
        kept = log_ratio.abs() <= log_cap
    elif mode == "seq_mask":
        mean = masked_sum(log_ratio, mask, dim=-1).unsqueeze(-1) / mask.sum(-1, keepdim=True).clamp(min=1)
        kept = (mean.abs() <= log_cap).expand_as(mask)
    else:
        raise ValueError(f"rollout correction {mode!r} is not a mask mode ({', '.join(MASK_MODES)})")
    return kept & mask


def rollout_correction_weights(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                               response_mask: torch.Tensor, mode: str,
                               cap: float) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Detached weights [rows, response_len] for the per-token policy losses (TIS modes; a mask mode's weights
    are 1 on kept tokens, 0 on rejected ones), and their mean and the share of tokens they zero."""
    mask = response_mask.bool()
    log_ratio = _log_ratios(old_logprobs, rollout_logprobs, mask)
    if mode == "token_tis":
        weights = torch.exp(log_ratio.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)).clamp(max=cap)
    elif mode == "seq_tis":
        sequence = masked_sum(log_ratio, mask, dim=-1).unsqueeze(-1).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        weights = torch.exp(sequence).clamp(max=cap).expand_as(log_ratio)
    elif mode in MASK_MODES:
        weights = rejection_mask(old_logprobs, rollout_logprobs, mask, mode, cap).float()
    else:
        raise ValueError(f"rollout correction {mode!r}; valid: {', '.join(ROLLOUT_CORRECTIONS)}")
    weights = torch.where(mask, weights, torch.zeros_like(weights)).to(old_logprobs.dtype)
    metrics = {"correction_weight_mean": float(masked_mean(weights, mask)),  # logged as actor/...
               "correction_zeroed": float(masked_mean((weights == 0).float(), mask))}
    return weights, metrics
