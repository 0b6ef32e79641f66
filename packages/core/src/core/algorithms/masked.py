"""Masked and per-group tensor statistics shared by the estimators and losses.

Every function takes a 0/1 `mask` of the same shape as its values; masked-out positions never
change a result, whatever they hold (garbage rewards or NaN-free padding).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

WHITEN_EPS = 1e-8
LOG_RATIO_CLAMP = 20.0  # log-ratios are clamped before exp in the losses: exp(20) is large, not inf

TokenLossesAndMetrics = Tuple[torch.Tensor, Dict[str, float]]  # per-token losses [batch, len], metrics


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    masked = torch.where(mask.bool(), values, torch.zeros_like(values))
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the unmasked entries; 0 when there are none."""
    return masked_sum(values, mask) / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(values - mean) / sqrt(var + 1e-8) over the mask, var with Bessel's correction; masked -> 0.

    With a single unmasked entry the unbiased variance is undefined; it is taken as 0 so the
    result is 0 rather than NaN.
    """
    count = mask.sum()
    mean = masked_mean(values, mask)
    centered = torch.where(mask.bool(), values - mean, torch.zeros_like(values))
    var = (centered**2).sum() / (count - 1).clamp(min=1)
    return centered * torch.rsqrt(var + WHITEN_EPS)


def group_index(group_ids: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Map arbitrary group ids [batch] to dense indices 0..G-1 (first-seen order is not kept)."""
    _, dense = torch.unique(torch.as_tensor(group_ids), return_inverse=True)
    return dense, int(dense.max()) + 1 if dense.numel() else 0


def group_mean_std(scores: torch.Tensor, group_ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row mean, unbiased std and size of the row's group, all [batch].

    A group of one gets mean 0 and std 1, so its score passes through normalisation unchanged.
    """
    dense, num_groups = group_index(group_ids)
    dense = dense.to(scores.device)
    sizes = torch.zeros(num_groups, dtype=scores.dtype, device=scores.device).index_add_(
        0, dense, torch.ones_like(scores)
    )
    sums = torch.zeros_like(sizes).index_add_(0, dense, scores)
    means = sums / sizes
    sq_dev = torch.zeros_like(sizes).index_add_(0, dense, (scores - means[dense]) ** 2)
    stds = torch.sqrt(sq_dev / (sizes - 1).clamp(min=1))
    row_size = sizes[dense]
    singleton = row_size == 1
    row_mean = torch.where(singleton, torch.zeros_like(scores), means[dense])
    row_std = torch.where(singleton, torch.ones_like(scores), stds[dense])
    return row_mean, row_std, row_size


def approx_kl(log_ratio: torch.Tensor, response_mask: torch.Tensor) -> float:
    """k1 estimate of KL(old || new): mean of log(old / new) over the sampled tokens."""
    return float(masked_mean(-log_ratio.detach(), response_mask))
