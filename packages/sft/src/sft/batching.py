"""A rank's share of a step as token-budget micro-batches (core.distributed's planning).

Rows are right-padded to the longest row of their micro-batch, so a micro-batch costs
`rows x longest` tokens (its real tokens when the trainer packs them, `trainer.remove_padding`). Every rank runs as many forward passes as the busiest one (FSDP gathers
parameters in each), padding with dummy passes that count zero. The loss is normalised by the
assistant-token count of the whole optimizer step, so how a step is cut never changes its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from core.distributed.batching import plan_micro_batches
from sft.chat import shifted_labels
from sft.dataset import SFTExample


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [rows, longest] right-padded with pad_token_id
    attention_mask: torch.Tensor  # [rows, longest] 1 on real tokens
    labels: torch.Tensor  # [rows, longest] next assistant token, -100 elsewhere
    weight: float = 1.0  # 0 for a dummy pass that only keeps this rank in step with the others

    @property
    def num_loss_tokens(self) -> int:
        return int((self.labels != -100).sum()) if self.weight else 0

    def to(self, device) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device), self.weight)

    def select(self, rows: torch.Tensor, weight: float = 1.0) -> "MicroBatch":
        """The rows `rows`, cut to their longest row."""
        longest = int(self.attention_mask[rows].sum(-1).max())
        return MicroBatch(self.input_ids[rows, :longest], self.attention_mask[rows, :longest],
                          self.labels[rows, :longest], weight)


def collate(examples: Sequence[SFTExample], pad_token_id: int) -> MicroBatch:
    longest = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), longest), dtype=torch.long)
    loss_mask = torch.zeros((len(examples), longest), dtype=torch.bool)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        attention_mask[row, :length] = 1
        loss_mask[row, :length] = torch.tensor(example.loss_mask, dtype=torch.bool)
    return MicroBatch(input_ids, attention_mask, shifted_labels(input_ids, loss_mask))


def micro_batches(examples: Sequence[SFTExample], token_budget: int, pad_token_id: int,
                  padded: bool = True) -> list[MicroBatch]:
    """This rank's micro-batches of at most `token_budget` tokens (plus dummies, see above): padded
    tokens, or real ones (`padded=False`) for the packed forward.

    A rank without examples (a tiny validation set over many ranks) runs dummy passes only; it
    needs one example to shape them, so callers hand such a rank any example with weight 0.
    """
    whole = collate(examples, pad_token_id)
    plan = plan_micro_batches(whole.attention_mask, token_budget, rows_per_micro=len(examples), padded=padded)
    return [whole.select(micro.rows, weight=0.0 if micro.dummy else 1.0) for micro in plan]
