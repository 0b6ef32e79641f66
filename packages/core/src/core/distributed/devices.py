"""Device-type-neutral helpers: torch's per-device module (torch.cuda, torch.xpu...) for any device.

Core asks a device, never a vendor: a backend names its device type (`Backend.device_type`) and
everything below follows from it.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch
import torch.distributed as dist


def device_module(device: torch.device | str) -> ModuleType | None:
    """torch.cuda for a "cuda" device, torch.xpu for "xpu"...; None for the CPU."""
    device = torch.device(device)
    return None if device.type == "cpu" else torch.get_device_module(device.type)


def cpu_threads() -> int:
    """Intra-op threads of a process training on the CPU: OMP_NUM_THREADS when set, else 1. One thread
    was the fastest setting for the builtin models on 2 cores (the RL demo: 1.7 s vs 2.0 s at torch's
    default of one per core), it cannot oversubscribe a shared machine or a machine running several
    workers, and the numbers do not change with the core count (matmul sums in the same order)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def use_cpu_threads(device: torch.device) -> None:
    """Apply `cpu_threads()` to a process that trains on the CPU; accelerator processes keep torch's default."""
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())


def empty_cache(device: torch.device | str) -> None:
    """Give the caching allocator's free blocks back to the device (a no-op on CPU)."""
    module = device_module(device)
    if module is not None:
        module.empty_cache()


def accelerator_memory_bytes() -> int | None:
    """Total memory of this process's current accelerator device, or None where there is none (CPU)."""
    module = device_module(default_accelerator())
    if module is None or not hasattr(module, "get_device_properties"):
        return None
    return int(module.get_device_properties(module.current_device()).total_memory)


def default_accelerator() -> str:
    """The device type torch sees here ("cuda", "xpu", ...), or "cpu"."""
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator.type if accelerator is not None else "cpu"


def collective_device(group: dist.ProcessGroup | None = None) -> torch.device:
    """Where tensors of a collective on `group` (None: the default one) must live: the CPU for gloo,
    else this rank's current accelerator (nccl, xccl and their kin reduce device memory only)."""
    if dist.get_backend(group) == dist.Backend.GLOO:
        return torch.device("cpu")
    kind = default_accelerator()
    return torch.device(kind, torch.get_device_module(kind).current_device())
