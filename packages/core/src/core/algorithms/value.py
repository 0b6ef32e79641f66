"""PPO critic loss with value clipping.

Shapes: values (current critic), old_values (critic at rollout time), returns, response_mask:
[batch, response_len].
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from core.algorithms.aggregation import aggregate_loss
from core.algorithms.masked import masked_mean


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    value_clip: float,
    loss_agg_mode: str,
    global_token_count: int,
    global_seq_count: int,
    horizon: Optional[int] = None,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """½ · max((V - R)², (clip(V, V_old ± value_clip) - R)²), aggregated like the policy loss.

    Returns (loss, metrics) with metrics `vf_clip_frac` (share of tokens where the clipped error
    is the larger one) over this micro-batch.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -value_clip, value_clip)
    unclipped_error = (values - returns).square()
    clipped_error = (clipped_values - returns).square()
    token_losses = 0.5 * torch.maximum(unclipped_error, clipped_error)
    loss = aggregate_loss(token_losses, response_mask, loss_agg_mode, global_token_count, global_seq_count, horizon)
    metrics = {"vf_clip_frac": float(masked_mean((clipped_error > unclipped_error).float(), response_mask))}
    return loss, metrics
