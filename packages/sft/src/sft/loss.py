"""The SFT loss: summed next-token cross-entropy over assistant tokens, divided by a step-wide count."""

from __future__ import annotations

import math

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


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base LR at optimizer step `step` (0-based): linear warm-up, then constant or cosine.

    warmup 4: steps 0..3 -> 0.25, 0.5, 0.75, 1.0. Cosine over total 10 after warm-up 0, min 0:
    step 5 -> 0.5 * (1 + cos(pi * 5 / 10)) = 0.5.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
