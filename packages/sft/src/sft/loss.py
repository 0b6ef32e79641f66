"""The SFT loss: summed next-token cross-entropy over assistant tokens, divided by a step-wide count."""

from __future__ import annotations

import torch

from core.algorithms.logprobs import logprobs_from_logits


def sft_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of -log p(label), number of labelled tokens) for logits [rows, len, vocab], labels [rows, len].

    Positions labelled -100 contribute nothing. Uniform logits over a vocab of V give -log(1/V) = log V
    per labelled token, so 3 labelled tokens over V = 4 sum to 3 log 4.
    """
    mask = labels != -100
    token_logprobs = logprobs_from_logits(logits, labels.masked_fill(~mask, 0))  # [rows, len]
    return -(token_logprobs * mask).sum(), int(mask.sum())
