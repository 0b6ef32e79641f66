"""Token-budget micro-batches: as many conversations per forward/backward as fit a token budget.

Rows are right-padded to the longest row of their micro-batch, so a micro-batch costs
`rows x longest` tokens; conversations are sorted by length first so that short ones travel
together and little of the budget goes to padding. The loss is normalised by the assistant-token
count of the whole optimizer step, so how a step is cut into micro-batches never changes its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from sft.chat import shifted_labels
from sft.dataset import SFTExample


@dataclass
class MicroBatch:
    input_ids: torch.Tensor  # [rows, longest] right-padded with pad_token_id
    attention_mask: torch.Tensor  # [rows, longest] 1 on real tokens
    labels: torch.Tensor  # [rows, longest] next assistant token, -100 elsewhere

    @property
    def num_loss_tokens(self) -> int:
        return int((self.labels != -100).sum())

    def to(self, device) -> "MicroBatch":
        return MicroBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def plan_micro_batches(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Group indices into micro-batches of at most `token_budget` padded tokens, shortest first.

    lengths [5, 2, 4, 3], budget 8 -> sorted 1(2), 3(3), 2(4), 0(5): [1, 3] costs 2 x 3 = 6; adding
    2 would cost 3 x 4 = 12 > 8 -> [[1, 3], [2], [0]]. A row longer than the budget goes alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) + 1) * lengths[index] > token_budget:
            groups.append(current)
            current = []
        current.append(index)
    if current:
        groups.append(current)
    return groups


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


def micro_batches(examples: Sequence[SFTExample], token_budget: int, pad_token_id: int) -> list[MicroBatch]:
    plan = plan_micro_batches([len(e.input_ids) for e in examples], token_budget)
    return [collate([examples[i] for i in group], pad_token_id) for group in plan]
