"""Loss aggregation that stays exact when a batch is split over micro-batches and DP ranks.

Convention the trainer follows: every micro-batch's loss is (sum of its per-token or per-sequence
terms) / GLOBAL count, where the global count is taken over the whole optimizer step (all
micro-batches on all data-parallel ranks). Gradients are then SUMMED over micro-batches and ranks
(with FSDP, which averages gradients over ranks, the trainer multiplies its loss by world size).
The sum of the micro-batch losses is then exactly the loss of the whole batch.

Modes (L: per-token loss [batch, response_len], m: mask, T_i = sum_t m_it, S: sequences with T_i > 0):
  token-mean               sum_it m_it L_it / sum_i T_i
  token-sum                sum_it m_it L_it                                     (no normaliser; verl's token-sum)
  seq-mean-token-sum       sum_{i in S} (sum_t m_it L_it) / |S|
  seq-mean-token-mean      sum_{i in S} (sum_t m_it L_it / T_i) / |S|
  seq-mean-token-sum-norm  sum_{i in S} (sum_t m_it L_it) / (|S| * horizon)   (Dr.GRPO; horizon constant)
Fully masked sequences are left out of the sequence means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.distributed as dist

from core.distributed.devices import collective_device

from core.algorithms.masked import masked_sum
from core.errors import TandemError

LOSS_AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


@dataclass(frozen=True)
class LossCounts:
    """Normalisers of one optimizer step."""

    tokens: int  # unmasked response tokens
    sequences: int  # sequences with at least one unmasked token

    def all_reduce(self, group: Optional[dist.ProcessGroup] = None) -> "LossCounts":
        """Sum the counts over the ranks of `group` (the default group when None)."""
        counts = torch.tensor([self.tokens, self.sequences], dtype=torch.int64, device=collective_device(group))
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
        return LossCounts(tokens=int(counts[0]), sequences=int(counts[1]))


def loss_counts(response_masks: Union[torch.Tensor, Sequence[torch.Tensor]]) -> LossCounts:
    """Local counts of a batch, given its mask [batch, response_len] or its micro-batches' masks.

    Call `.all_reduce(group)` on the result to get the global counts under data parallelism.
    """
    masks = [response_masks] if isinstance(response_masks, torch.Tensor) else list(response_masks)
    tokens = sum(int(m.bool().sum()) for m in masks)
    sequences = sum(int(m.bool().any(-1).sum()) for m in masks)
    return LossCounts(tokens=tokens, sequences=sequences)


def check_loss_agg_mode(mode: str) -> None:
    if mode not in LOSS_AGG_MODES:
        raise TandemError(f"algorithm.loss_agg_mode={mode!r} is unknown; valid: {', '.join(LOSS_AGG_MODES)}")


def aggregate_loss(
    token_losses: torch.Tensor,
    response_mask: torch.Tensor,
    mode: str,
    global_token_count: int,
    global_seq_count: int,
    horizon: Optional[int] = None,
) -> torch.Tensor:
    """This micro-batch's share of the step loss: sum of its terms / the global count (see module doc)."""
    check_loss_agg_mode(mode)
    if mode == "token-mean":
        return masked_sum(token_losses, response_mask) / max(global_token_count, 1)
    if mode == "token-sum":  # each micro-batch's sum is its share already: the shares add up to the total
        return masked_sum(token_losses, response_mask)
    seq_sums = masked_sum(token_losses, response_mask, dim=-1)
    if mode == "seq-mean-token-mean":
        seq_sums = seq_sums / response_mask.sum(-1).clamp(min=1).to(seq_sums.dtype)
    elif mode == "seq-mean-token-sum-norm":
        if not horizon or horizon <= 0:
            raise TandemError(
                "loss_agg_mode=seq-mean-token-sum-norm needs a positive horizon (the maximum response length)"
            )
        seq_sums = seq_sums / horizon
    # fully masked sequences sum to 0 here and are not in global_seq_count
    return seq_sums.sum() / max(global_seq_count, 1)
