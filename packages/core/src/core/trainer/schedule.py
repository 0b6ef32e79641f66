"""The learning-rate schedule RL and SFT share: linear warm-up, then constant or cosine decay."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "cosine")


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


def lr_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, schedule: str = "constant",
                 min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """The optimizer's LR times `lr_factor` at each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps, schedule, min_ratio)
    )
