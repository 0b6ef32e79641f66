"""The one optimizer step of every trainer (the actor's, the critic's, SFT's), after the gradients are in.

    clip the gradient norm (over every rank's shards) -> step, only if that norm is finite -> free the
    gradients -> advance the learning-rate schedule

A non-finite norm skips the update rather than writing NaN into the weights; the run's health guard sees
the reported norm and stops the run with a diagnosis. Gradients are freed at once, not at the next step:
alive through the rollout, each pins the cached segment it was carved from, and the engine cannot wake
into that memory.
"""

from __future__ import annotations

import math

import torch

from core.distributed.fsdp import clip_grad_norm


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> dict[str, float]:
    """Apply the accumulated gradients; returns {"grad_norm": before clipping, "lr": the rate this step used}
    ("lr" only with a schedule)."""
    grad_norm = clip_grad_norm(model.parameters(), grad_clip)
    if math.isfinite(grad_norm):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    metrics = {"grad_norm": grad_norm}
    if scheduler is not None:
        metrics["lr"] = scheduler.get_last_lr()[0]
        scheduler.step()
    return metrics
