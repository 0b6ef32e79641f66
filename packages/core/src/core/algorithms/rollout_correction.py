"""Rollout/trainer mismatch: the engine samples with its own kernels and the trainer scores the same
tokens with other numerics, so the trainer's behaviour log-probs (`old`) are not those the tokens were
drawn with (`rollout`) and the update is slightly off-policy.

Measured every step the engine returns its log-probs (`rollout.logprobs=true`, or any correction):
  mismatch/abs_logprob_diff_mean, _max   |old - rollout| over the response tokens
  mismatch/token_mult_prob_error        masked mean of exp(|old - rollout|): NeMo-RL's metric (its CI
                                        gates on a median below 1.1; 1.0 is a perfect match)
Corrected in the policy loss with a detached per-token weight (`algorithm.rollout_correction`, cap C =
`algorithm.rollout_correction_cap`), d = old - rollout:
  token_tis    min(exp(d_t), C)                          truncated importance sampling (per token)
  seq_tis      min(exp(sum_t d_t), C) on every token      the sequence's importance ratio, truncated
  token_mask   1 if 1/C <= exp(d_t) <= C else 0           drop tokens the two engines disagree on
  seq_mask     1 if 1/C <= exp(mean_t d_t) <= C else 0    drop whole sequences (geometric-mean ratio)
verl's rollout_is=token / sequence and rollout_rs=token / geometric are these, with its threshold as C.

Shapes: old_logprobs, rollout_logprobs, response_mask: [rows, response_len].
"""

from __future__ import annotations

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


def rollout_correction_weights(old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor,
                               response_mask: torch.Tensor, mode: str,
                               cap: float) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Detached weights [rows, response_len] for the per-token policy losses (see the module doc),
    and their mean and the share of tokens they zero, over the response tokens."""
    mask = response_mask.bool()
    log_ratio = torch.clamp(old_logprobs.detach().float() - rollout_logprobs.float(), -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    log_ratio = torch.where(mask, log_ratio, torch.zeros_like(log_ratio))
    lengths = mask.sum(-1, keepdim=True).clamp(min=1)
    log_cap = torch.log(torch.tensor(float(cap)))
    if mode == "token_tis":
        weights = torch.exp(log_ratio).clamp(max=cap)
    elif mode == "seq_tis":
        sequence = masked_sum(log_ratio, mask, dim=-1).unsqueeze(-1).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
        weights = torch.exp(sequence).clamp(max=cap).expand_as(log_ratio)
    elif mode == "token_mask":
        weights = (log_ratio.abs() <= log_cap).float()
    elif mode == "seq_mask":
        mean = masked_sum(log_ratio, mask, dim=-1).unsqueeze(-1) / lengths
        weights = (mean.abs() <= log_cap).float().expand_as(log_ratio)
    else:
        raise ValueError(f"rollout correction {mode!r}; valid: {', '.join(ROLLOUT_CORRECTIONS)}")
    weights = torch.where(mask, weights, torch.zeros_like(weights)).to(old_logprobs.dtype)
    metrics = {"correction_weight_mean": float(masked_mean(weights, mask)),  # logged as actor/...
               "correction_zeroed": float(masked_mean((weights == 0).float(), mask))}
    return weights, metrics
