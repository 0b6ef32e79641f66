"""The few collectives the trainer needs, each a no-op without torch.distributed (in-process launcher)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from core.algorithms.aggregation import LossCounts, loss_counts
from core.distributed.devices import collective_device


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """Whether several ranks share the work (the one test of it: every other module asks here)."""
    return world()[1] > 1


def data_parallel_size() -> int:
    """Ranks that each hold a share of the batch (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def _device_tensor(values: list[float], dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=collective_device())


def max_over_ranks(value: int) -> int:
    if not is_distributed():
        return value
    tensor = _device_tensor([value], torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def global_loss_counts(response_mask: torch.Tensor) -> LossCounts:
    """Token and sequence counts of the optimizer step over all ranks (see core/algorithms/aggregation.py)."""
    counts = loss_counts(response_mask)
    return counts.all_reduce() if is_distributed() else counts


def sum_over_ranks(metrics: dict[str, float]) -> dict[str, float]:
    """Sum each metric over ranks (every rank passes the same keys in the same order)."""
    if not is_distributed() or not metrics:
        return metrics
    tensor = _device_tensor(list(metrics.values()), torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(metrics, tensor.tolist()))
